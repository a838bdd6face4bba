#!/usr/bin/env bash
# start.sh WORKDIR [PORT] — run Debian's Keystone for Mosaic's tests:
# sqlite database, fernet tokens, uwsgi (Debian's uwsgi-plugin-python3) on
# 127.0.0.1:PORT (default 5000). Bootstraps user "admin" (password
# $KEYSTONE_ADMIN_PASSWORD, default "adminpw") in project "admin" with the
# admin, member and reader roles. Prints the base URL when Keystone answers.
# Stop it with: kill $(cat WORKDIR/uwsgi.pid)
#
# Two details matter (see docs/auth.md): one process with one thread (sqlite
# answers "database is locked" to concurrent writers), and --http11-socket
# (plain --http-socket resets the keep-alive connections keystoneauth uses).
set -euo pipefail
W=${1:?usage: start.sh WORKDIR [PORT]}
PORT=${2:-5000}
PW=${KEYSTONE_ADMIN_PASSWORD:-adminpw}
URL=http://127.0.0.1:$PORT
for t in keystone-manage uwsgi; do
  command -v $t >/dev/null || { echo "start.sh: $t missing (apt-get install keystone)" >&2; exit 1; }
done
[ -f /usr/bin/keystone-wsgi-public ] || { echo "start.sh: /usr/bin/keystone-wsgi-public missing (apt-get install keystone)" >&2; exit 1; }
if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
  echo "start.sh: 127.0.0.1:$PORT is already in use" >&2; exit 1
fi
mkdir -p "$W"
W=$(cd "$W" && pwd)
cat > "$W/keystone.conf" <<CONF
[DEFAULT]
log_file = $W/keystone.log
[database]
connection = sqlite:///$W/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = $W/fernet-keys
[fernet_receipts]
key_repository = $W/fernet-receipts
[credential]
key_repository = $W/credential-keys
CONF
km() { keystone-manage --config-file "$W/keystone.conf" "$@" >>"$W/manage.log" 2>&1; }
km db_sync
# WAL journal: a reader never blocks a writer. Keystone leaves a read
# transaction open on a pooled connection after some failed validations;
# in sqlite's default journal mode that makes the next write (a project,
# a service) fail with "database is locked" after 5 s.
python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$W/keystone.db"
km fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
km credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
km bootstrap --bootstrap-password "$PW" --bootstrap-admin-url "$URL/v3/" \
   --bootstrap-public-url "$URL/v3/" --bootstrap-internal-url "$URL/v3/" --bootstrap-region-id RegionOne
OS_KEYSTONE_CONFIG_FILES="$W/keystone.conf" nohup uwsgi --http11-socket "127.0.0.1:$PORT" --plugin python3 \
  --wsgi-file /usr/bin/keystone-wsgi-public --master --processes 1 --threads 1 --lazy-apps \
  --buffer-size 65535 --die-on-term --pidfile "$W/uwsgi.pid" --logto "$W/uwsgi.log" >/dev/null 2>&1 &
for _ in $(seq 1 240); do
  if curl -sf "$URL/v3" >/dev/null 2>&1; then echo "$URL"; exit 0; fi
  sleep 0.25
done
echo "start.sh: keystone did not answer on $URL within 60 s; see $W/uwsgi.log and $W/keystone.log" >&2
tail -20 "$W/uwsgi.log" >&2 || true
exit 1
