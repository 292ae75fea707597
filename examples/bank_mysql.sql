-- The MariaDB/MySQL side of the PostgreSQL-MariaDB example: carol's account.
CREATE TABLE IF NOT EXISTS accounts (
  name    varchar(32) PRIMARY KEY,
  balance integer NOT NULL CHECK (balance >= 0)
) ENGINE=InnoDB;
INSERT IGNORE INTO accounts VALUES ('carol', 100);
