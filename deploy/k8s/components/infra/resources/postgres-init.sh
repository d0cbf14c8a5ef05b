# PostgreSQL's first start (the image sources each *.sh in /docker-entrypoint-initdb.d on an empty data directory):
# one database per service (database-per-service), each owned by a role of that service's own, with a password of
# its own (kind-up.sh generates them; the pod reads them from the shanhai-db Secret). The services connected as the
# image's POSTGRES_USER, a superuser: a compromised order pod could read the user service's password hashes, drop
# payment's ledger, or run a program in PostgreSQL's container (COPY ... TO PROGRAM). A service's role may log in,
# owns its database (and so, on PostgreSQL 15+, its public schema, where the migrations create their tables) and
# nothing else: no superuser, no CREATEDB or CREATEROLE, and no other database accepts its connections (CONNECT
# revoked from PUBLIC). The passwords reach psql through its \getenv, never its arguments.
# Sourced by the entrypoint's bash: no `set` here, which would change the entrypoint's own options.
# deploy's TestPostgresInitGivesEachServiceItsOwnRole runs this script on a private PostgreSQL.
for svc in user order payment; do
	pwenv=SHANHAI_DB_${svc^^}_PASSWORD
	# The Secret's keys are required (the pod does not start without them); an empty one would make a role no
	# password logs in as. Failing here stops the start, but the entrypoint then treats the directory as
	# initialised: delete the claim (kind-down.sh) after fixing the Secret.
	if [[ -z ${!pwenv:-} ]]; then
		echo "postgres-init: $pwenv is empty" >&2
		exit 1
	fi
	psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
		-v svc="shanhai_$svc" -v pwenv="$pwenv" <<'SQL'
\getenv pw :pwenv
CREATE ROLE :"svc" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'pw';
CREATE DATABASE :"svc" OWNER :"svc";
REVOKE ALL ON DATABASE :"svc" FROM PUBLIC;
SQL
done
# The image's own databases (POSTGRES_DB, postgres) and template1 admit PUBLIC, so every service's role could log in
# there too and create temporary tables: they are the superuser's alone (pg_isready, the probes, needs no CONNECT).
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v db="$POSTGRES_DB" <<'SQL'
REVOKE CONNECT, TEMPORARY ON DATABASE :"db", postgres, template1 FROM PUBLIC;
SQL
unset svc pwenv
