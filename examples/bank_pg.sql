-- The PostgreSQL side of the examples: accounts and flights.
CREATE TABLE IF NOT EXISTS accounts (
  name    text PRIMARY KEY,
  balance integer NOT NULL CHECK (balance >= 0)
);
INSERT INTO accounts VALUES ('alice', 100) ON CONFLICT (name) DO NOTHING;

CREATE TABLE IF NOT EXISTS flights (
  flight     text PRIMARY KEY,
  seats_left integer NOT NULL CHECK (seats_left >= 0)
);
INSERT INTO flights VALUES ('XA101', 2) ON CONFLICT (flight) DO NOTHING;

CREATE TABLE IF NOT EXISTS tickets (
  booking text PRIMARY KEY,
  flight  text NOT NULL REFERENCES flights
);
