-- Consilium: databases, login roles and per-service schemas.
--
-- One source of truth, used by
--   * deploy/local/stack.sh  (psql as the postgres superuser, on every `up`), and
--   * docker-compose.yml     (this folder is mounted as /docker-entrypoint-initdb.d).
-- Idempotent: every statement can run again on an already provisioned server.
--
-- Passwords come from the environment of psql: CONSILIUM_PG_PASSWORD_ASSIGNMENT,
-- _SUBMISSION, _CONSENSUS, _EXPORT and _ADMIN (stack.sh passes them through; in compose
-- they are set on the postgres container). Each defaults to the role's name, for
-- development only. \getenv needs psql 15 or newer.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

\getenv pw_assignment CONSILIUM_PG_PASSWORD_ASSIGNMENT
\if :{?pw_assignment}
\else
  \set pw_assignment consilium_assignment
\endif
\getenv pw_submission CONSILIUM_PG_PASSWORD_SUBMISSION
\if :{?pw_submission}
\else
  \set pw_submission consilium_submission
\endif
\getenv pw_consensus CONSILIUM_PG_PASSWORD_CONSENSUS
\if :{?pw_consensus}
\else
  \set pw_consensus consilium_consensus
\endif
\getenv pw_export CONSILIUM_PG_PASSWORD_EXPORT
\if :{?pw_export}
\else
  \set pw_export consilium_export
\endif
\getenv pw_admin CONSILIUM_PG_PASSWORD_ADMIN
\if :{?pw_admin}
\else
  \set pw_admin consilium_admin
\endif

-- Roles: one per service, plus an ops role that can read every service's schema.
SELECT format('CREATE ROLE %I', r)
  FROM unnest(ARRAY['consilium_assignment', 'consilium_submission', 'consilium_consensus',
                    'consilium_export', 'consilium_admin']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec

-- Re-applied on every run so that a changed password or a tampered role is put right.
ALTER ROLE consilium_assignment LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw_assignment';
ALTER ROLE consilium_submission LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw_submission';
ALTER ROLE consilium_consensus  LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw_consensus';
ALTER ROLE consilium_export     LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw_export';
ALTER ROLE consilium_admin      LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw_admin';

-- Unqualified names resolve to the service's own schema, in every database.
ALTER ROLE consilium_assignment SET search_path = assignment;
ALTER ROLE consilium_submission SET search_path = submission;
ALTER ROLE consilium_consensus  SET search_path = consensus;
ALTER ROLE consilium_export     SET search_path = export;

-- The admin inherits the service roles' privileges (it can read, and as a member also
-- write, every schema); it is for ops tools and humans, never for a service.
GRANT consilium_assignment, consilium_submission, consilium_consensus, consilium_export
   TO consilium_admin;

-- The owner of the audit log: nobody logs in as it, so no service can alter, disable or
-- drop what it appended (schemas.psql creates the audit schema it owns).
SELECT 'CREATE ROLE consilium_audit'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'consilium_audit')
\gexec
ALTER ROLE consilium_audit NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;

-- Databases: the development database and the one the integration tests use.
-- CREATE DATABASE cannot run in a function or transaction, hence \gexec.
SELECT format('CREATE DATABASE %I', d)
  FROM unnest(ARRAY['consilium', 'consilium_test']) AS d
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d)
\gexec

\connect consilium
\ir schemas.psql
\connect consilium_test
\ir schemas.psql
