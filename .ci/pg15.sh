#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster on loopback: the production major (Supabase's
# platform Postgres), beside the embedded 18 the rest of the suite uses.
#
#   .ci/pg15.sh start   # prints the superuser URL (use it as TEST_DATABASE_URL)
#   .ci/pg15.sh url     # prints it again
#   .ci/pg15.sh stop    # stops the server and deletes the cluster
#
# Needs Debian's server (`apt-get install postgresql-15`; `.ci/run` installs it with
# pgTAP, plpgsql_check and pg_prove). As root, the cluster runs as the `postgres` user
# (initdb refuses root). Settings: PG15_BIN, PG15_DIR, PG15_PORT.
set -euo pipefail

BIN="${PG15_BIN:-/usr/lib/postgresql/15/bin}"
DIR="${PG15_DIR:-/tmp/cmon-pg15}"
PORT="${PG15_PORT:-54315}"
URL="postgresql://postgres@127.0.0.1:${PORT}/postgres"

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "${1:-}" in
start)
    if [ ! -x "$BIN/initdb" ]; then
        echo "pg15.sh: no PostgreSQL 15 at $BIN (apt-get install postgresql-15)" >&2
        exit 1
    fi
    if [ -f "$DIR/data/postmaster.pid" ]; then
        echo "pg15.sh: a cluster is already running in $DIR (.ci/pg15.sh stop)" >&2
        exit 1
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
    as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log"
    # fsync off and small buffers: a test cluster, thrown away afterwards.
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-p $PORT -c listen_addresses=127.0.0.1 -k $DIR -c fsync=off -c full_page_writes=off \
            -c synchronous_commit=off -c max_connections=200" start >/dev/null
    echo "$URL"
    ;;
url)
    echo "$URL"
    ;;
stop)
    if [ -f "$DIR/data/postmaster.pid" ]; then
        as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    fi
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|url|stop" >&2
    exit 2
    ;;
esac
