-- First boot of the compose database: the same roles as scripts/infra.sh creates for `make run`.
-- tistis owns the schema and runs migrations; tistis_app is what services use, so row level
-- security applies to it (NOBYPASSRLS, not an owner).
CREATE ROLE tistis LOGIN CREATEDB CREATEROLE PASSWORD 'tistis';
CREATE ROLE tistis_app LOGIN NOBYPASSRLS PASSWORD 'tistis_app';
GRANT tistis_app TO tistis WITH ADMIN OPTION;
CREATE DATABASE tistis OWNER tistis;
