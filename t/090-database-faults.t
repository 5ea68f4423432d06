# PostgreSQL going away, coming back, running slow, and many requests
# sharing a small pool: clear pages, no hangs, no reload needed.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use ShinseiTest qw(free_port);

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new(own_pg => 1, pool => 4,
                         db_opts => 'connect_timeout=2s query_timeout=1s '
                                    . 'queue_timeout=3s');

sub timed_get {
    my ($path) = @_;
    my $t0 = time;
    my $r = $t->get($path);
    return ($r, time - $t0);
}

my ($r, $took) = timed_get('/');
is($r->{status}, 200, 'the catalogue answers while the database is up');
my $health = $t->json($t->get('/healthz')->{content});
is($health->{database}, 'up', '/healthz says the database is up');

# --- the database stops -------------------------------------------------

$t->pg_down;

($r, $took) = timed_get('/');
is($r->{status}, 503, 'with PostgreSQL stopped, a page answers 503');
cmp_ok($took, '<', 2.5, sprintf('within the connect timeout (%.3f s)', $took));
like($r->{text}, qr{<h1>ただいまご利用になれません</h1>}, 'with the Japanese 503 page');
like($r->{text}, qr{site-header__city">葛城市<}, 'in the site layout, city name included');
is($r->{headers}{'retry-after'}, '30', 'and Retry-After');

($r, $took) = timed_get('/healthz');
is($r->{status}, 503, '/healthz answers 503 while the database is down');
is($t->json($r->{content})->{database}, 'down', 'and says so');

($r, $took) = timed_get('/procedures/koseki');
is($r->{status}, 503, 'every page answers 503, not a hang');
cmp_ok($took, '<', 2.5, 'promptly');

# --- the database comes back --------------------------------------------

$t->pg_up;

my $ok = 0;
my $t0 = time;
while (time - $t0 < 10) {
    if ($t->get('/')->{status} == 200) {
        $ok = 1;
        last;
    }
    sleep 0.2;
}
ok($ok, sprintf('after PostgreSQL restarts, pages succeed again without '
                . 'reloading nginx (%.1f s)', time - $t0));
is($t->get('/procedures/koseki')->{status}, 200, 'and keep succeeding');
is($t->json($t->get('/healthz')->{content})->{database}, 'up',
   '/healthz says up again');

# --- 200 concurrent requests through a pool of 4 ------------------------

# /healthz queries every time (the pages' data may come from the worker's
# copy, see t/010), so at least 100 of them wait for one of 4 connections
my $queries = $t->json($t->get('/healthz')->{content})->{counters}{queries};
my @urls = map { $t->url($_ % 2 ? '/healthz' : '/procedures/juminhyo') }
           1 .. 200;
my $codes = `curl -s --no-progress-meter --parallel --parallel-max 200 --parallel-immediate @{[ map { "-o /dev/null -w '%{http_code}\\n' $_" } @urls ]} 2>/dev/null`;
my @codes = split /\n/, $codes;
is(scalar @codes, 200, '200 concurrent requests were answered');
is(scalar(grep { $_ eq '200' } @codes), 200, 'all 200 succeeded with a pool of 4')
    or diag(join ' ', @codes);
$health = $t->json($t->get('/healthz')->{content});
cmp_ok($health->{pool}{open}, '<=', 4, 'no more than 4 connections were opened');
cmp_ok($health->{counters}{queries} - $queries, '>=', 100,
       'for at least 100 queries');

# --- a query over its timeout -------------------------------------------

my $before = $t->json($t->get('/healthz')->{content});

# hold a lock the query of a procedure page needs for 3 s; the page of
# kazei has not been asked for yet, so the worker has no copy of its data
# (ngx_shinsei_citizen_catalogue.c) and must query
my $locker = fork // die;
if ($locker == 0) {
    $t->psql("BEGIN; LOCK TABLE procedures IN ACCESS EXCLUSIVE MODE; "
             . "SELECT pg_sleep(3); COMMIT;");
    POSIX::_exit(0);
}
sleep 0.5;

($r, $took) = timed_get('/procedures/kazei');
is($r->{status}, 504, 'a query over query_timeout gets the 504 page');
like($r->{text}, qr{<h1>時間内に処理が完了しませんでした</h1>}, 'in Japanese');
cmp_ok($took, '<', 2, sprintf('after the timeout, not the lock (%.3f s)', $took));
like($t->error_log, qr/shinsei: query timed out; the server rolled it back/,
     'the timeout is logged: the server itself ended the statement '
     . '(statement_timeout and lock_timeout, from query_timeout)');

waitpid($locker, 0);

my $after = $t->json($t->get('/healthz')->{content});
is($after->{counters}{timedout} - $before->{counters}{timedout}, 1,
   'the pool counted one timed-out query');
is($t->get('/procedures/kazei')->{status}, 200,
   'the next request succeeds on a fresh connection');
is($after->{pool}{open}, $before->{pool}{open},
   'the connection whose statement the server ended serves again, '
   . 'no new one was opened');

$t->done;

# --- a database that accepts but never answers --------------------------

my $hole = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1',
                                 LocalPort => 0) or die $!;
my $t2 = ShinseiTest->new(conninfo => 'host=127.0.0.1 port=' . $hole->sockport
                                      . ' dbname=x user=x sslmode=disable',
                          db_opts => 'connect_timeout=1s');
($r, $took) = (undef, 0);
my $s = time;
$r = $t2->get('/');
$took = time - $s;
is($r->{status}, 503, 'a database that never answers gives 503');
cmp_ok($took, '<', 2, sprintf('after connect_timeout (%.3f s)', $took));
like($t2->error_log, qr/connection to the database timed out/, 'and a log line');
$t2->done;

# --- a multi-host string whose first host never answers ------------------

my $t3 = ShinseiTest->new(own_pg => 1, no_start => 1,
                          db_opts => 'connect_timeout=1s');
$t3->{conninfo} = 'host=127.0.0.1,' . $t3->{pg_dir}
                . ' port=' . $hole->sockport . ',' . $t3->{pg_port}
                . ' dbname=shinsei user=shinsei sslmode=disable';
$t3->start;
$s = time;
$r = $t3->get('/');
my $first = time - $s;
ok($r->{status} == 200 || $r->{status} == 503,
   'with the first host silent, the first request ends in time');
my $ok3 = 0;
$s = time;
for (1 .. 20) {
    $r = $t3->get('/');
    if ($r->{status} == 200) { $ok3 = 1; last }
    sleep 0.2;
}
ok($ok3, sprintf('the next host of the list serves the pages (%.1f s)', time - $s));
cmp_ok($first + (time - $s), '<', 5, 'failover takes about the connect timeout, not forever');
$t3->done;

done_testing;
