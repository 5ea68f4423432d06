#!/usr/bin/env bash
# ngx_shinsei: one script for the whole life of a checkout.
#
#   ./build.sh deps     install what is missing (Debian 12, as root)
#   ./build.sh build    build the module, plain and ASan+UBSan
#   ./build.sh run      start PostgreSQL, nginx and the stand-ins with demo
#                       data on loopback; Ctrl-C stops them
#   ./build.sh test     run the whole suite against both builds
#   ./build.sh bench    benchmark the catalogue page against a static file
#   ./build.sh migrate  apply sql/NNN_*.sql to $PGDATABASE (used by the above)
#
# Ports and paths are environment variables; see README.md.

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$TOP"

BUILD=${SHINSEI_BUILD:-$TOP/build}
VAR=${SHINSEI_VAR:-$TOP/var}
PGBIN=${SHINSEI_PGBIN:-/usr/lib/postgresql/15/bin}

# The demo's PostgreSQL cluster runs as the user postgres, who may not be
# able to enter the checkout (root's home and mktemp -d folders are 0700),
# so as root it lives in /var/lib/ngx-shinsei/, one per checkout; an
# older var/pg is kept where it works.
run_pg_dir() {
    if [ -n "${SHINSEI_PGDIR:-}" ]; then
        echo "$SHINSEI_PGDIR"
    elif [ "$(id -u)" != 0 ] || [ -f "$VAR/pg/data/PG_VERSION" ]; then
        echo "$VAR/pg"
    else
        echo "/var/lib/ngx-shinsei/$(basename "$TOP")-$(printf '%s' "$TOP" \
            | sha256sum | cut -c1-8)/pg"
    fi
}

PACKAGES=(
    build-essential nginx nginx-dev libpq-dev libcurl4-openssl-dev
    libcjson-dev libxml2-dev libssl-dev libunistring-dev zlib1g-dev
    postgresql postgresql-client
    python3-aiosmtpd python3-cryptography perl libio-socket-ssl-perl wrk
    curl ca-certificates procps iproute2 openssl
)

log() { printf '%s\n' "build.sh: $*" >&2; }
die() { log "$*"; exit 1; }


# --- deps -----------------------------------------------------------------

cmd_deps() {
    local missing=()
    local p
    for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
                | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    # Node.js (design tokens, browser tests): Debian's, unless one is there
    if ! command -v npm >/dev/null 2>&1; then
        missing+=(nodejs npm)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}


# --- build ----------------------------------------------------------------

# configure_tree DIR EXTRA_CFLAGS EXTRA_LDFLAGS
configure_tree() {
    local dir=$1 cflags=$2 ldflags=$3
    local stamp="$dir/.shinsei-configured"
    local want="$cflags|$ldflags|$(stat -c %Y "$TOP/config")"

    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi

    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    cp -a /usr/share/nginx/src "$dir"
    (
        cd "$dir"
        # shellcheck disable=SC1091
        source ./conf_flags
        # Debian's own flags keep the module binary-compatible with
        # Debian's nginx; only compiler and linker options are added.
        ./configure "${NGX_CONF_FLAGS[@]}" \
            --with-cc-opt="-g -O2 -fPIC -fstack-protector-strong $cflags" \
            --with-ld-opt="-Wl,-z,relro -Wl,-z,now -fPIC $ldflags" \
            --add-dynamic-module="$TOP" >"$dir/configure.log" 2>&1
    ) || { tail -20 "$dir/configure.log" >&2; die "configure failed"; }
    echo "$want" >"$stamp"
}

cmd_build() {
    cmd_deps
    configure_tree "$BUILD/nginx" "" ""
    make -s -C "$BUILD/nginx" -f objs/Makefile modules
    configure_tree "$BUILD/nginx-asan" \
        "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
        "-fsanitize=address,undefined -Wl,-z,nodelete"
    make -s -C "$BUILD/nginx-asan" -f objs/Makefile modules
    install_tokens
    precompress_static
    log "built $BUILD/nginx/objs/ngx_shinsei_module.so"
    log "built $BUILD/nginx-asan/objs/ngx_shinsei_module.so (ASan+UBSan)"
}


# --- PostgreSQL -------------------------------------------------------------

# as_postgres CMD...: initdb refuses root, so the cluster runs as postgres
as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# pg_up DIR PORT: a cluster in DIR listening on 127.0.0.1:PORT and on a
# socket in DIR, with the roles of pg_roles and the database "shinsei"
# migrated by its owner.  Made the first time, started every time.  DIR must be a
# place the user postgres can reach.
cmd_pg_up() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$dir"
        runuser -u postgres -- test -w "$dir" \
            || die "the user postgres cannot reach $dir (a parent folder is private)"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_postgres "$PGBIN/initdb" -D "$dir/data" -U postgres \
            --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    fi
    if ! as_postgres "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
    then
        as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
            -o "-k $dir -p $port -c listen_addresses=127.0.0.1 ${SHINSEI_PG_OPTS:-}" \
            start >/dev/null || { tail -20 "$dir/server.log" >&2; die "PostgreSQL did not start"; }
    fi
    local psql=(psql -X -q -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1)
    pg_roles "${psql[@]}"
    local owner
    owner=$("${psql[@]}" -tAc "SELECT pg_get_userbyid(datdba) FROM pg_database
                               WHERE datname = 'shinsei'")
    if [ -z "$owner" ]; then
        "${psql[@]}" -c "CREATE DATABASE shinsei OWNER shinsei_owner"
    elif [ "$owner" = shinsei ]; then
        # a database of before the owner role: its objects go to it
        "${psql[@]}" -d shinsei -c "REASSIGN OWNED BY shinsei TO shinsei_owner"
        log "the database shinsei now belongs to shinsei_owner"
    fi
    PGHOST=$dir PGPORT=$port PGUSER=shinsei_owner PGDATABASE=shinsei cmd_migrate
}

# pg_roles PSQL...: the roles of the cluster (N-PRIV-1).  shinsei_owner
# owns the database and runs the migrations; shinsei_runtime holds the
# grants of sql/014 and later; the module logs in as shinsei, a member of
# shinsei_runtime that owns nothing.
pg_roles() {
    "$@" <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shinsei_owner') THEN
        CREATE ROLE shinsei_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shinsei_runtime') THEN
        CREATE ROLE shinsei_runtime NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'shinsei') THEN
        CREATE ROLE shinsei LOGIN;
    END IF;
    IF NOT pg_has_role('shinsei', 'shinsei_runtime', 'MEMBER') THEN
        GRANT shinsei_runtime TO shinsei;
    END IF;
END;
$$;
SQL
}

cmd_pg_down() {
    local dir=$1
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

# migrate: apply each sql/NNN_name.sql not yet recorded, in order, each
# in one transaction with its record (PG* variables name the database).
cmd_migrate() {
    local f v psql=(psql -X -q -v ON_ERROR_STOP=1)
    export PGOPTIONS="-c client_min_messages=warning"
    "${psql[@]}" -c "CREATE TABLE IF NOT EXISTS schema_migrations (
        version text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now())"
    for f in "$TOP"/sql/[0-9][0-9][0-9]_*.sql; do
        v=$(basename "$f" .sql)
        if [ -n "$("${psql[@]}" -tA -v v="$v" <<<"SELECT 1 FROM schema_migrations WHERE version = :'v';")" ]; then
            continue
        fi
        { cat "$f"; echo; echo "INSERT INTO schema_migrations (version) VALUES (:'v');"; } \
            | "${psql[@]}" -1 -v v="$v" -f - || die "migration $v failed"
        log "applied $v"
    done
}


# The Digital Agency design tokens (MIT), served from html/static/vendor.
# site.css has a fallback for every token, so a failed download only
# costs the exact colours; the pages link the file all the same (nginx
# -t refuses a template naming a missing one), so then it is a stub,
# replaced by the next build that can fetch the tokens.
TOKENS_VERSION=1.1.9
TOKENS_STUB="shinsei: design tokens not fetched"
install_tokens() {
    local dest="$TOP/html/static/vendor"
    if [ -f "$dest/dads-tokens.css" ] \
            && ! grep -qF "$TOKENS_STUB" "$dest/dads-tokens.css"; then
        return 0
    fi
    local tmp="$BUILD/tokens"
    rm -rf "$tmp" && mkdir -p "$tmp" "$dest"
    if (cd "$tmp" && npm pack --silent \
            "@digital-go-jp/design-tokens@$TOKENS_VERSION" >/dev/null 2>&1 \
            && tar xzf digital-go-jp-design-tokens-*.tgz); then
        cp "$tmp/package/dist/tokens.css" "$dest/dads-tokens.css"
        cp "$tmp/package/LICENSE" "$dest/dads-tokens.LICENSE"
    else
        log "warning: could not fetch @digital-go-jp/design-tokens;" \
            "the site uses its fallback colours"
        printf '/* %s: site.css uses its fallback colours */\n' \
            "$TOKENS_STUB" >"$dest/dads-tokens.css"
    fi
}

# Each text file of html/static gets a compressed copy next to it
# (site.css.gz), which nginx sends as it is (gzip_static) under the
# hashed names.  Build output, not in git; -n leaves names and times out
# of it, so the same file gives the same copy.  The module refuses to
# start on a copy whose content is not its file's.
precompress_static() {
    local f
    while IFS= read -r -d '' f; do
        if [ ! -f "${f%.gz}" ]; then
            rm -f "$f"          # its file is gone
        fi
    done < <(find "$TOP/html/static" -type f -name '*.gz' -print0)
    find "$TOP/html/static" -type f \
        \( -name '*.css' -o -name '*.js' -o -name '*.svg' \) \
        -exec gzip -9 -n -k -f {} +
}

free_port() {
    perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1,
        LocalAddr => "127.0.0.1", LocalPort => 0)->sockport'
}


# --- test -----------------------------------------------------------------

cmd_test() {
    cmd_build
    "$TOP/t/browser/install.sh"
    local dir port status=0
    # the suite's cluster, where postgres can reach it whatever the checkout
    dir=$(mktemp -d /tmp/shinsei-test-pg.XXXXXX)
    chmod 0755 "$dir"
    port=$(free_port)
    SHINSEI_PG_OPTS="-c fsync=off -c max_connections=300" \
        cmd_pg_up "$dir" "$port"
    # shellcheck disable=SC2064
    trap "cmd_pg_down '$dir'; rm -rf '$dir'" EXIT
    export SHINSEI_TEST_PG="host=$dir port=$port"

    log "the suite against the plain build"
    SHINSEI_MODULE="$BUILD/nginx/objs/ngx_shinsei_module.so" \
        prove -I t/lib ${SHINSEI_PROVE_OPTS:-} t/ || status=1

    log "the suite against the ASan+UBSan build"
    SHINSEI_ASAN=1 \
    SHINSEI_MODULE="$BUILD/nginx-asan/objs/ngx_shinsei_module.so" \
        prove -I t/lib ${SHINSEI_PROVE_OPTS:-} t/ || status=1

    # on success the output ends with prove's summary
    if [ $status != 0 ]; then
        log "FAILED: see the summaries above (plain build first, then ASan)"
    fi
    return $status
}


# --- run ------------------------------------------------------------------

RUN_PIDS=()

run_stop() {
    trap - INT TERM EXIT
    log "stopping"
    if [ -f "$VAR/nginx/nginx.pid" ]; then
        kill -QUIT "$(cat "$VAR/nginx/nginx.pid")" 2>/dev/null || true
    fi
    local p
    for p in "${RUN_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    cmd_pg_down "$(run_pg_dir)"
}

cmd_run() {
    cmd_build
    local port=${SHINSEI_PORT:-8080} pgport=${SHINSEI_PG_PORT:-5433}
    local smtpport=${SHINSEI_SMTP_PORT:-2525}
    local ngx="$VAR/nginx"
    mkdir -p "$ngx/tmp" "$VAR/log" "$VAR/mail"

    local pgdir
    pgdir=$(run_pg_dir)
    cmd_pg_up "$pgdir" "$pgport"
    trap run_stop INT TERM EXIT

    # the keys of the personal data: made once, kept with the database
    if [ ! -f "$VAR/data.keys" ]; then
        (umask 077 && printf 'index %s\nkey k1 %s\n' \
            "$(openssl rand -hex 32)" "$(openssl rand -hex 32)" \
            >"$VAR/data.keys")
    fi

    # a real SMTP server on loopback keeping every mail in var/mail/new
    PYTHONPATH="$TOP/t/lib" /usr/bin/python3 -m aiosmtpd -n \
        -l "127.0.0.1:$smtpport" -c shinsei_smtp_sink.MaildirSink \
        "$VAR/mail" >"$VAR/log/smtp.log" 2>&1 &
    RUN_PIDS+=($!)

    write_run_config "$ngx/nginx.conf" "$port" "$pgport" "$smtpport" "$pgdir"
    /usr/sbin/nginx -t -q -p "$ngx/" -c "$ngx/nginx.conf" \
        -e "$VAR/log/error.log"
    /usr/sbin/nginx -p "$ngx/" -c "$ngx/nginx.conf" -e "$VAR/log/error.log" &
    RUN_PIDS+=($!)

    cat <<EOF

  葛城市 オンライン申請 is running.

    citizen site    http://127.0.0.1:$port/
    health          http://127.0.0.1:$port/healthz
    mails sent      $VAR/mail/new/  (read them: ./build.sh mails)
    PostgreSQL      psql -h $pgdir -p $pgport -U shinsei shinsei
                    (the cluster: $pgdir/data)
    nginx log       $VAR/log/error.log

  Ctrl-C stops everything.

EOF
    wait "${RUN_PIDS[-1]}"
}

# mails: the newest mails of "run", decoded (subject, recipient, body)
cmd_mails() {
    perl -I "$TOP/t/lib" -MShinseiTest::Mail -CS -e '
        my @files = sort glob("$ARGV[0]/new/*");
        for my $f (@files[($#files > 4 ? $#files - 4 : 0) .. $#files]) {
            my $m = ShinseiTest::Mail::parse(do { local (@ARGV, $/) = $f; <> });
            print "-" x 60, "\nTo: $m->{to}\nSubject: $m->{subject}\n\n$m->{body}\n";
        }' "$VAR/mail"
}

write_run_config() {
    local file=$1 port=$2 pgport=$3 smtpport=$4 pgdir=$5 user=""
    if [ "$(id -u)" = 0 ]; then
        user="user root root;"
    fi
    cat >"$file" <<EOF
# Written by ./build.sh run; conf/ holds a production configuration.
load_module $BUILD/nginx/objs/ngx_shinsei_module.so;
daemon off;
worker_processes 2;
$user
pid $VAR/nginx/nginx.pid;
error_log $VAR/log/error.log info;

events {
    worker_connections 4096;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format shinsei escape=json
        '{"time":"\$time_iso8601","addr":"\$remote_addr",'
        '"method":"\$request_method","uri":"\$uri","status":\$status,'
        '"bytes":\$bytes_sent,"rt":\$request_time}';

    access_log $VAR/log/access.log shinsei;
    client_body_temp_path $VAR/nginx/tmp/body;
    proxy_temp_path $VAR/nginx/tmp/proxy;
    fastcgi_temp_path $VAR/nginx/tmp/fastcgi;
    uwsgi_temp_path $VAR/nginx/tmp/uwsgi;
    scgi_temp_path $VAR/nginx/tmp/scgi;

    client_body_buffer_size 64k;
    client_max_body_size 1m;

    shinsei_db "host=$pgdir port=$pgport dbname=shinsei user=shinsei" pool=8;
    shinsei_session_cache 10m;
    shinsei_templates $TOP/html/templates;
    shinsei_assets $TOP/html/static /static/;
    shinsei_data_keys $VAR/data.keys;
    shinsei_password_blocklist $TOP/conf/common-passwords.txt;
    shinsei_smtp smtp://127.0.0.1:$smtpport timeout=10s retry=5s;

    # the limits of conf/: per client, and the password checks at once
    limit_req_zone \$shinsei_client zone=shinsei_login:10m rate=10r/m;
    limit_req_zone \$shinsei_client zone=shinsei_mail:10m rate=5r/m;
    limit_req_status 429;
    shinsei_password_budget 32;

    server {
        listen 127.0.0.1:$port;
        shinsei_tenant katsuragi;
        shinsei_site_url http://127.0.0.1:$port;
        shinsei_mail_from noreply@katsuragi.example.jp;
        # the demo runs on plain http, on loopback only
        shinsei_insecure_cookie on;
        absolute_redirect off;
        error_page 400 404 405 413 414 429 494 500 501 502 503 504 505 /_error;

        location / {
            shinsei_app citizen;
        }
        location = /login {
            limit_req zone=shinsei_login burst=5 nodelay;
            shinsei_app citizen;
        }
        location ~ ^/(signup|password/forgot|mypage/email)\$ {
            limit_req zone=shinsei_mail burst=3 nodelay;
            shinsei_app citizen;
        }
        location = /_error {
            internal;
            shinsei_app error;
        }
        # the hashed names the pages link (conf/citizen-katsuragi.conf)
        location ~ "^/static/(?<asset>.+)\\.[0-9a-f]{10}(?<ext>\\.[^./]+)\$" {
            root $TOP/html;
            try_files /static/\$asset\$ext =404;
            gzip_static on;
            gzip_vary on;
            add_header Cache-Control "public, max-age=31536000, immutable";
        }
        location /static/ {
            root $TOP/html;
            expires 1h;
        }
        location = /favicon.ico {
            root $TOP/html/static;
            expires 1d;
        }
    }
}
EOF
}


case "${1:-}" in
    deps)    cmd_deps ;;
    build)   cmd_build ;;
    test)    cmd_test ;;
    bench)   cmd_build; exec perl "$TOP/t/bench/bench.pl" ;;
    run)     cmd_run ;;
    mails)   cmd_mails ;;
    migrate) cmd_migrate ;;
    pg-up)   shift; cmd_pg_up "$@" ;;
    pg-down) shift; cmd_pg_down "$@" ;;
    *)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
