package ShinseiTest;

# The test harness: a throw-away PostgreSQL database (a copy of the
# migrated template on the suite's cluster, or a private cluster), nginx
# with the freshly built module on free loopback ports, HTTP clients with
# cookie jars, and the closing checks every test file ends with.
#
#   my $t = ShinseiTest->new;                # database + nginx
#   my $r = $t->get('/');                    # a fresh browser each time
#   my $b = $t->browser;                     # or one with its own cookies
#   $b->get('/login'); $b->submit_form('/login', { email => ... });
#   $t->done;                                # checks error.log, stops all
#
# Environment:
#   SHINSEI_MODULE   the module to load (default: build/nginx/objs/...)
#   SHINSEI_ASAN     1 when the module is the ASan+UBSan build
#   SHINSEI_TEST_PG  "host=DIR port=N" of the suite's cluster (build.sh test)
#
# share => $t: a second nginx on $t's database, keys and mail server, as
# another node of the same deployment would be.
#   TEST_NGINX_LEAVE keep the temporary directory

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Copy ();
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(sleep time);

use ShinseiTest::Browser;

our @EXPORT_OK = qw(free_port);

our $TOP = abs_path(dirname(__FILE__) . '/../..');
our $INSTANCES = 0;

sub new {
    my ($class, %opt) = @_;

    my $self = bless {
        workers   => 1,
        pool      => 4,
        db_opts   => '',
        tenants   => ['katsuragi'],
        http_extra => '',
        log_level => 'info',
        kdf => 'ln=12 r=8 p=1',
        smtp_opts => 'timeout=3s retry=1s attempts=5',
        session_cache => '10m',
        server_extra => '',
        %opt,
    }, $class;

    my $dir = tempdir('shinsei-test-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{TEST_NGINX_LEAVE});
    chmod 0755, $dir;
    $self->{dir} = $dir;

    $self->{module} = $ENV{SHINSEI_MODULE}
        || "$TOP/build/nginx/objs/ngx_shinsei_module.so";
    $self->{module} = abs_path($self->{module}) if -f $self->{module};
    die "no module at $self->{module}: run ./build.sh build\n"
        unless -f $self->{module};

    if (my $node = $self->{share}) {
        # a second node of the same deployment: its database and keys
        $self->{$_} = $node->{$_} for qw(pg_dir pg_port dbname);
        File::Copy::copy("$node->{dir}/data.keys", "$dir/data.keys")
            or die "copy data.keys: $!";
        chmod 0600, "$dir/data.keys";
    } else {
        $self->setup_database;
        $self->write_keys;
    }

    if ($self->{share} && $self->{share}{smtp}) {
        # one mail server for the deployment: either node may send a mail
        $self->{smtp} = $self->{share}{smtp};
    } elsif ($self->{mail}) {
        require ShinseiTest::Mail;
        $self->{smtp} = ShinseiTest::Mail->new(dir => $dir);
    }

    $self->start unless $opt{no_start};

    return $self;
}


# --- PostgreSQL ----------------------------------------------------------

sub setup_database {
    my ($self) = @_;

    if ($self->{own_pg} || !$ENV{SHINSEI_TEST_PG}) {
        # a private cluster, for tests that stop and start it
        $self->{pg_dir} = "$self->{dir}/pg";
        $self->{pg_port} = free_port();
        $self->{own_cluster} = 1;
        $self->pg_up;
        $self->{dbname} = 'shinsei';
        return;
    }

    my %pg = $ENV{SHINSEI_TEST_PG} =~ /(\w+)=(\S+)/g;
    $self->{pg_dir} = $pg{host};
    $self->{pg_port} = $pg{port};

    (my $name = $0) =~ s{.*/}{};
    $name =~ s/\W/_/g;
    # a test may run two instances at once: each its own database
    $self->{dbname} = lc "t_${name}_$$" . ($INSTANCES++ ? "_$INSTANCES" : '');

    $self->psql_admin("DROP DATABASE IF EXISTS $self->{dbname}");
    $self->psql_admin("CREATE DATABASE $self->{dbname} "
                      . "TEMPLATE shinsei OWNER shinsei_owner");
}

sub pg_up {
    my ($self) = @_;
    my $log = "$self->{dir}/pg-up.log";
    system("'$TOP/build.sh' pg-up '$self->{pg_dir}' $self->{pg_port} "
           . ">>'$log' 2>&1") == 0
        or BAIL_OUT('cannot start PostgreSQL: ' . $self->slurp($log));
}

sub pg_down {
    my ($self) = @_;
    system("$TOP/build.sh", 'pg-down', $self->{pg_dir}) == 0
        or BAIL_OUT('cannot stop PostgreSQL');
}

sub conninfo {
    my ($self) = @_;
    return $self->{conninfo} if $self->{conninfo};
    return "host=$self->{pg_dir} port=$self->{pg_port} "
         . "dbname=$self->{dbname} user=shinsei";
}

# psql(SQL, user => ROLE): runs as the owner of the database (the test
# sets things up and looks at them as an operator would), or as ROLE
# ("shinsei": the module's own); returns the rows as tab-separated lines
# (without a trailing newline)
sub psql {
    my ($self, $sql, %opt) = @_;
    return $self->_psql($sql, $opt{user} || 'shinsei_owner', $self->{dbname});
}

sub psql_admin {
    my ($self, $sql) = @_;
    return $self->_psql($sql, 'postgres', 'postgres');
}

sub _psql {
    my ($self, $sql, $user, $db) = @_;
    my $out = "$self->{dir}/psql.out";
    my $err = "$self->{dir}/psql.err";
    # psql's messages go to a file: a failure's error is in what it dies
    # with, a success's notices are passed on to STDERR
    open(my $save, '>&', \*STDERR) or die "dup: $!";
    open(STDERR, '>', $err) or die "$err: $!";
    my $ok = open(my $fh, '|-:encoding(UTF-8)', 'psql', '-X', '-q', '-tA',
                  '-F', "\t", '-v', 'ON_ERROR_STOP=1', '-h', $self->{pg_dir},
                  '-p', $self->{pg_port}, '-U', $user, '-d', $db, '-o', $out);
    open(STDERR, '>&', $save) or die "dup: $!";
    $ok or die "psql: $!";
    print $fh $sql;
    my $closed = close $fh;
    my $said = $self->slurp($err);
    die "psql failed on: $sql\n$said" unless $closed;
    print STDERR $said if length $said;
    open(my $in, '<:encoding(UTF-8)', $out) or return '';
    local $/;
    my $text = <$in> // '';
    $text =~ s/\s+\z//;
    return $text;
}


# --- keys and mail -------------------------------------------------------

# a data key file of random keys, as an operator would make with
# "openssl rand -hex 32"
sub write_keys {
    my ($self) = @_;
    my $hex = sub { join '', map { sprintf '%02x', int rand 256 } 1 .. 32 };
    open(my $fh, '>', "$self->{dir}/data.keys") or die $!;
    print $fh "# test keys\nindex ", $hex->(), "\nkey k1 ", $hex->(), "\n";
    close $fh;
    chmod 0600, "$self->{dir}/data.keys";
}

sub mail { $_[0]->{smtp} }

sub smtp_url {
    my ($self) = @_;
    return $self->{smtp_url} if $self->{smtp_url};
    return $self->{smtp} ? $self->{smtp}->url : 'smtp://127.0.0.1:9';
}


# --- nginx ---------------------------------------------------------------

sub port { $_[0]->{port} }

sub url {
    my ($self, $path, $port) = @_;
    return ($self->{tls} ? 'https' : 'http') . '://127.0.0.1:'
         . ($port || $self->{port}) . $path;
}

# a self-signed certificate for 127.0.0.1, for tls => 1
sub make_certificate {
    my ($self) = @_;
    my $d = $self->{dir};
    return if -f "$d/tls.crt";
    system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
           . "-addext subjectAltName=IP:127.0.0.1 -keyout $d/tls.key "
           . "-out $d/tls.crt >/dev/null 2>&1") == 0
        or die "openssl req failed\n";
}

sub write_config {
    my ($self) = @_;
    my $d = $self->{dir};

    $self->{port} ||= free_port();
    $self->{ports} ||= [ $self->{port},
                         map { free_port() } 2 .. @{ $self->{tenants} } ];

    my $user = $> == 0 ? "user root root;" : '';
    my $db = $self->conninfo;
    # static_root => DIR: its static/ instead of html/static
    my $static = $self->{static_root} // "$TOP/html";
    my $scheme = $self->{tls} ? 'https' : 'http';
    my $tls = '';
    if ($self->{tls}) {
        $self->make_certificate;
        $tls = "\n        ssl_certificate $d/tls.crt;"
             . "\n        ssl_certificate_key $d/tls.key;";
    }
    my $servers = '';
    for my $i (0 .. $#{ $self->{tenants} }) {
        $servers .= <<"EOF";
    server {
        listen 127.0.0.1:$self->{ports}[$i]@{[ $self->{tls} ? ' ssl' : '' ]};
        shinsei_tenant $self->{tenants}[$i];
        shinsei_insecure_cookie @{[ $self->{insecure_cookie} // 'on' ]};
        shinsei_site_url $scheme://127.0.0.1:$self->{ports}[$i];$tls
        shinsei_mail_from noreply\@$self->{tenants}[$i].example.jp;
        absolute_redirect off;
        error_page 400 404 405 413 414 429 494 500 501 502 503 504 505 /_error;
        location / {
            shinsei_app citizen;
        }
        location = /_error {
            internal;
            shinsei_app error;
        }
        # as conf/citizen-katsuragi.conf: the hashed names, a year
        location ~ "^/static/(?<asset>.+)\\.[0-9a-f]{10}(?<ext>\\.[^./]+)\$" {
            root $static;
            try_files /static/\$asset\$ext =404;
            gzip_static on;
            gzip_vary on;
            add_header Cache-Control "public, max-age=31536000, immutable";
        }
        location /static/ {
            root $static;
            expires 1h;
        }
        location = /favicon.ico {
            root $static/static;
        }
$self->{server_extra}
    }
EOF
    }

    open(my $fh, '>', "$d/nginx.conf") or die $!;
    print $fh <<"EOF";
load_module $self->{module};
daemon off;
master_process on;
worker_processes $self->{workers};
$user
pid $d/nginx.pid;
error_log $d/error.log $self->{log_level};
worker_rlimit_nofile 8192;
events {
    worker_connections 4096;
}
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    # as conf/nginx.conf: no query strings (tokens of mail links), no cookies
    log_format shinsei escape=json
        '{"time":"\$time_iso8601","addr":"\$remote_addr",'
        '"method":"\$request_method","uri":"\$uri","status":\$status,'
        '"bytes":\$bytes_sent,"rt":\$request_time}';
    access_log $d/access.log shinsei @{[ $self->{access_log_opts} // '' ]};
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    client_body_buffer_size 64k;
    client_max_body_size 1m;
    # a client that connects and sends nothing keeps a worker in graceful
    # shutdown until this runs out; nginx's 60 s is longer than stop() waits
    client_header_timeout 10s;
    shinsei_db "$db" pool=$self->{pool} $self->{db_opts};
    shinsei_templates $TOP/html/templates;
    shinsei_assets $static/static /static/;
    shinsei_data_keys $d/data.keys;
    shinsei_password_blocklist $TOP/conf/common-passwords.txt;
    shinsei_password_kdf $self->{kdf};
    shinsei_smtp @{[ $self->smtp_url ]} $self->{smtp_opts};
@{[ $self->{session_cache} ? "shinsei_session_cache $self->{session_cache};" : '' ]}
$self->{http_extra}
$servers
}
EOF
    close $fh;
    make_path("$d/tmp");
}

sub env_for_nginx {
    my ($self) = @_;
    my %env;
    if ($ENV{SHINSEI_ASAN}) {
        chomp(my $asan = `gcc -print-file-name=libasan.so`);
        $env{LD_PRELOAD} = $asan;
        $env{ASAN_OPTIONS} = join(':',
            "log_path=$self->{dir}/asan", 'detect_leaks=1',
            "suppressions=$TOP/t/lib/asan.supp", 'abort_on_error=0',
            'detect_odr_violation=0');
        $env{LSAN_OPTIONS} = "suppressions=$TOP/t/lib/lsan.supp:print_suppressions=0";
        $env{UBSAN_OPTIONS} = "print_stacktrace=1:log_path=$self->{dir}/ubsan";
    }
    return %env;
}

sub start {
    my ($self) = @_;
    my $d = $self->{dir};

    $self->write_config;

    my %env = $self->env_for_nginx;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        @ENV{keys %env} = values %env;
        open(STDOUT, '>', "$d/stdout.log");
        open(STDERR, '>', "$d/stderr.log");
        exec('/usr/sbin/nginx', '-p', "$d/", '-c', "$d/nginx.conf",
             '-e', "$d/error.log") or POSIX::_exit(127);
    }
    $self->{nginx_pid} = $pid;

    for (1 .. 200) {
        for my $port (@{ $self->{ports} }) {
            goto up if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                             Timeout => 1);
        }
        if (waitpid($pid, WNOHANG) == $pid) {
            BAIL_OUT("nginx exited: " . $self->slurp("$d/stderr.log")
                     . $self->slurp("$d/error.log"));
        }
        sleep 0.05;
    }
    BAIL_OUT('nginx did not start');
up:
    return $self;
}

# nginx_t(CONFIG_TEXT): runs "nginx -t" on a configuration, returns
# (exit code, output)
sub nginx_t {
    my ($self, $conf) = @_;
    my $file = "$self->{dir}/check.conf";
    open(my $fh, '>', $file) or die $!;
    print $fh $conf;
    close $fh;
    return $self->nginx_run('-t', '-p', "$self->{dir}/", '-c', $file,
                            '-e', "$self->{dir}/check.log");
}

# nginx_run(ARGS): runs /usr/sbin/nginx with the module's environment (the
# ASan runtime first when the module is the ASan build); returns (exit
# code, stdout and stderr)
sub nginx_run {
    my ($self, @args) = @_;
    my %env = $self->env_for_nginx;
    # "nginx -t" exits without freeing its cycle, by design: only the
    # memory errors count here; leaks are checked in running workers
    $env{ASAN_OPTIONS} =~ s/detect_leaks=1/detect_leaks=0/ if %env;
    local @ENV{keys %env} = values %env;
    my $cmd = join(' ', map { "'$_'" } '/usr/sbin/nginx', @args);
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{nginx_pid} or return;
    kill 'QUIT', $pid;
    for (1 .. 600) {
        return if waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }
    # a worker that does not end on QUIT is a bug: say where it hangs
    my @workers = split ' ', `pgrep -P $pid 2>/dev/null`;
    diag("nginx did not quit in 30 s; workers @workers");
    for my $w (@workers) {
        diag(`gdb -p $w -batch -ex 'thread apply all bt' 2>&1`)
            if -x '/usr/bin/gdb';
    }
    my @tail = (split /\n/, $self->error_log)[-30 .. -1];
    diag(join("\n", grep { defined } @tail));
    fail('nginx quits on QUIT within 30 s');
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

sub reload {
    my ($self) = @_;
    kill 'HUP', $self->{nginx_pid};
}

# worker_pids: the current worker processes
sub worker_pids {
    my ($self) = @_;
    my @pids = split ' ', `pgrep -P $self->{nginx_pid}`;
    return grep { (`ps -o args= -p $_` // '') =~ /worker process/ } @pids;
}

sub error_log { $_[0]->slurp("$_[0]{dir}/error.log") }

sub slurp {
    my ($self, $file) = @_;
    open(my $fh, '<', $file) or return '';
    local $/;
    return <$fh> // '';
}


# --- HTTP ----------------------------------------------------------------

sub browser {
    my ($self, %opt) = @_;
    return ShinseiTest::Browser->new(base => $self->url('', $opt{port}),
                                     %opt);
}

sub get {
    my ($self, $path, %opt) = @_;
    return $self->browser(%opt)->get($path);
}

# get_until(PATH, RE, timeout => 10): GETs PATH until its text matches RE
# (or not, with unlike => 1); returns the last response.  For what reaches
# the workers asynchronously, such as a NOTIFY emptying their caches: on a
# quiet machine within milliseconds; the timeout is for a loaded one.
sub get_until {
    my ($self, $path, $re, %opt) = @_;
    my $until = Time::HiRes::time() + ($opt{timeout} // 10);
    while (1) {
        my $r = $self->get($path, $opt{port} ? (port => $opt{port}) : ());
        my $match = ($r->{text} // '') =~ $re;
        return $r if $opt{unlike} ? !$match : $match;
        return $r if Time::HiRes::time() >= $until;
        Time::HiRes::sleep(0.02);
    }
}

sub json {
    my ($self, $text) = @_;
    return JSON::PP->new->utf8->decode($text);
}


# --- the end of every test file -----------------------------------------

sub done {
    my ($self) = @_;
    return if $self->{done}++;

    $self->stop;

    my $log = $self->error_log;
    my @bad = grep { /\[(alert|crit|emerg)\]/ } split /\n/, $log;
    ok(!@bad, 'error.log has no [alert], [crit] or [emerg]')
        or diag(join("\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]));

    if ($ENV{SHINSEI_ASAN}) {
        my @reports = (glob("$self->{dir}/asan.*"),
                       glob("$self->{dir}/ubsan.*"));
        my $text = join("\n", map { $self->slurp($_) } @reports);
        ok(!@reports, 'no AddressSanitizer or UBSan report')
            or diag(substr($text, 0, 6000));
    }

    if ($self->{share}) {
        # the database is the first node's
    } elsif ($self->{own_cluster}) {
        $self->pg_down;
    } elsif ($self->{dbname} && !$ENV{TEST_NGINX_LEAVE}) {
        eval { $self->psql_admin("DROP DATABASE IF EXISTS $self->{dbname} "
                                 . "WITH (FORCE)") };
    }
}

sub DESTROY {
    my ($self) = @_;
    if ($self->{nginx_pid}) {
        kill 'TERM', $self->{nginx_pid};
        waitpid($self->{nginx_pid}, 0);
    }
    if ($self->{own_cluster} && !$self->{share} && !$self->{done}) {
        system("$TOP/build.sh", 'pg-down', $self->{pg_dir});
    }
}

sub free_port {
    my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                     LocalPort => 0, ReuseAddr => 1)
        or die "free_port: $!";
    my $port = $sock->sockport;
    close $sock;
    return $port;
}

1;
