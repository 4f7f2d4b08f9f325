/* storage--1.0--1.1.sql: update script from release 1.0 to 1.1 */

\echo Use "ALTER EXTENSION storage UPDATE TO '1.1'" to load this file. \quit

--
-- Release 1.1 has no install script of its own: CREATE EXTENSION storage
-- runs storage--1.0.sql and then this script, so that a fresh install and
-- an updated one are made by the same statements (the upgrade test
-- compares both).  Every change of release 1.1 to installed SQL goes here,
-- in the section of its topic.
--

-- ==== search_path safety and the expiry worker ====

-- ==== fast paths: what the statements enforce ====

-- ==== purge: skipped rows, back-off, status ====

-- ==== locks with fencing tokens ====

-- ==== input rules and the DROP EXTENSION guard ====
