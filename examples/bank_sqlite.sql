-- The SQLite side of the examples: accounts and hotel rooms.
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS accounts (
  name    TEXT PRIMARY KEY,
  balance INTEGER NOT NULL CHECK (balance >= 0)
);
INSERT OR IGNORE INTO accounts VALUES ('bob', 50);

CREATE TABLE IF NOT EXISTS hotels (
  hotel      TEXT PRIMARY KEY,
  rooms_left INTEGER NOT NULL CHECK (rooms_left >= 0)
);
INSERT OR IGNORE INTO hotels VALUES ('Grand', 1);

CREATE TABLE IF NOT EXISTS reservations (
  booking TEXT PRIMARY KEY,
  hotel   TEXT NOT NULL
);
