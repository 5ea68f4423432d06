# Timeouts hold on the server, and a query nobody waits for any more is
# cancelled there (DESIGN.md, PostgreSQL: "Server-side statement_timeout
# matches ours, and a query we give up on is cancelled on the server";
# REQ N-REL-1): a write over its time is rolled back, never committed
# after the resident saw the 504 page; a client that goes away while its
# query runs, while it waits for a connection, or while its password
# hashes leaves nothing behind.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

# lock(t, SQL to take the lock, seconds): a psql holding a lock, forked
sub lock_for {
    my ($t, $take, $secs) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $t->psql("BEGIN; $take; SELECT pg_sleep($secs); COMMIT;");
        POSIX::_exit(0);
    }
    # the lock is held once psql's backend sleeps
    for (1 .. 100) {
        last if $t->psql("SELECT count(*) FROM pg_stat_activity"
                         . " WHERE datname = current_database()"
                         . " AND query LIKE '%pg_sleep($secs)%'"
                         . " AND pid <> pg_backend_pid()",
                         user => 'postgres') > 0;
        sleep 0.05;
    }
    return $pid;
}

# statements of the module's connections waiting for a lock now
sub lock_waiters {
    my ($t) = @_;
    return $t->psql("SELECT count(*) FROM pg_stat_activity"
                    . " WHERE datname = current_database()"
                    . " AND application_name = 'ngx_shinsei'"
                    . " AND wait_event_type = 'Lock'",
                    user => 'postgres');
}

# until(CODE, timeout): polls CODE until true; the time it took, or undef
sub until_true {
    my ($code, $timeout) = @_;
    my $t0 = time;
    while (time - $t0 < $timeout) {
        return time - $t0 if $code->();
        sleep 0.02;
    }
    return undef;
}

sub health { my ($t) = @_; $t->json($t->get('/healthz')->{content}) }

sub rename_form {
    my ($b, $name) = @_;
    $b->get('/mypage/name');
    return $b->submit_form('/mypage/name',
                           { name => $name, name_kana => 'カワル ハナコ' });
}

# --- the server's own timeout ends a write ------------------------------

my $t = ShinseiTest->new(mail => 1, pool => 2, db_opts => 'query_timeout=1s');

is($t->psql("SELECT count(*) FROM pg_stat_activity"
            . " WHERE datname = current_database()"
            . " AND application_name = 'ngx_shinsei'",
            user => 'postgres') > 0, 1,
   'the module\'s connections name themselves (application_name)');
like($t->psql("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'"),
     qr/^\d+$/, 'psql sees settings (for the checks below)');

my $b = signed_up_resident($t, email => 'hanako@example.jp');
my $id = $t->psql("SELECT id FROM citizens");

my $r = $b->get('/mypage');
like($r->{text}, qr{<dd>葛城 太郎</dd>}, 'the resident has a name');

my $written = $t->psql("SELECT updated_at FROM citizens WHERE id = $id");
my $locker = lock_for($t, "SELECT 1 FROM citizens WHERE id = $id FOR UPDATE", 3);
my $t0 = time;
$r = rename_form($b, '変更 花子');
my $took = time - $t0;
is($r->{status}, 504, 'a write that waits for a lock past query_timeout gets the 504 page');
like($r->{text}, qr{<h1>時間内に処理が完了しませんでした</h1>}, 'in Japanese');
cmp_ok($took, '<', 1.9, sprintf('after the server\'s lock_timeout (1 s), not '
                                . 'the lock (%.2f s)', $took));
is(lock_waiters($t), 0, 'nothing of the module waits for the lock any more');
like($t->error_log, qr/shinsei: query timed out; the server rolled it back/,
     'the log says the server rolled it back');
waitpid($locker, 0);
like($b->get('/mypage')->{text}, qr{<dd>葛城 太郎</dd>},
     'once the lock is gone, the name is unchanged: the write was rolled '
     . 'back, not committed late');
is($t->psql("SELECT updated_at FROM citizens WHERE id = $id"), $written,
   'the row was not written');
$r = rename_form($b, '変更 花子');
is($r->{status}, 303, 'the same change succeeds without the lock');
like($b->get('/mypage')->{text}, qr{<dd>変更 花子</dd>}, 'and shows at once');

$t->done;

# --- a server that does not end it: the module cancels it ---------------

# the operator's options come last and win: here the server never times
# out, so the module's own timer (query_timeout + 1 s) and its cancel act
$t = ShinseiTest->new(mail => 1, pool => 2, no_start => 1,
                      db_opts => 'query_timeout=1s');
$t->{conninfo} = $t->conninfo
    . " options='-c statement_timeout=0 -c lock_timeout=0'";
$t->start;

$b = signed_up_resident($t, email => 'jiro@example.jp');
$id = $t->psql("SELECT id FROM citizens");
my $before = health($t);

$locker = lock_for($t, "SELECT 1 FROM citizens WHERE id = $id FOR UPDATE", 4);
$t0 = time;
$r = rename_form($b, '遅延 次郎');
$took = time - $t0;
is($r->{status}, 504, 'with the server\'s timeouts off, the module\'s own timer gives the 504 page');
cmp_ok($took, '<', 3, sprintf('after query_timeout and its grace (%.2f s)', $took));
like($t->error_log, qr/shinsei: query timed out without an answer from the server; cancelling it there/,
     'the log says the query is cancelled on the server');
like($t->error_log, qr/shinsei: cancelling the query of database backend \d+/,
     'by its backend');
my $gone = until_true(sub { lock_waiters($t) == 0 }, 1.5);
ok(defined $gone, sprintf('the statement stopped waiting on the server while '
                          . 'the lock is still held (pg_cancel_backend, %.2f s)',
                          $gone // -1));
ok(kill(0, $locker) && !waitpid($locker, POSIX::WNOHANG()),
   'the lock was still held then');
waitpid($locker, 0);
like($b->get('/mypage')->{text}, qr{<dd>葛城 太郎</dd>},
     'after the lock, the name is unchanged: cancelled, rolled back');
my $after = health($t);
cmp_ok($after->{counters}{cancels} - $before->{counters}{cancels}, '>=', 1,
       '/healthz counts the cancel');
is($after->{counters}{timedout} - $before->{counters}{timedout}, 1,
   'and the timed-out query');
is($after->{pool}{cancelling}, 0, 'no connection is left cancelling');
cmp_ok($after->{pool}{open}, '<=', 2, 'the pool stayed within its size');
is(rename_form($b, '遅延 次郎')->{status}, 303, 'the next change succeeds');

$t->done;

# --- clients that go away ------------------------------------------------

$t = ShinseiTest->new(pool => 1, db_opts => 'query_timeout=5s queue_timeout=8s',
                      kdf => 'ln=15 r=8 p=3');

# raw(REQUEST, seconds): sends a request, closes the socket after a while
sub send_and_close {
    my ($req, $secs) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port)
        or die "connect: $!";
    print $s $req;
    sleep $secs;
    close $s;
}

is($t->get('/')->{status}, 200, 'the catalogue answers');
$before = health($t);

# 1. while its query runs: the page of a procedure waits on a table lock
$locker = lock_for($t, 'LOCK TABLE procedures IN ACCESS EXCLUSIVE MODE', 3);
send_and_close("GET /procedures/kazei HTTP/1.1\r\nHost: x\r\n\r\n", 0.3);
$gone = until_true(sub { lock_waiters($t) == 0 }, 1.5);
ok(defined $gone, sprintf('a client that went away mid-query: its statement is '
                          . 'cancelled on the server at once (%.2f s), the '
                          . 'lock still held', $gone // -1));
like($t->error_log, qr/shinsei: client went away while its request was waiting/,
     'the log says the client went away');
waitpid($locker, 0);
is($t->get('/procedures/kazei')->{status}, 200,
   'the worker serves the next request');
$after = health($t);
is($after->{pool}{open}, 1, 'on the same, reused connection');
cmp_ok($after->{counters}{cancels} - $before->{counters}{cancels}, '>=', 1,
       'and one cancel was sent');

# 2. while it waits for a connection: the one connection is held by a
# page waiting on a lock; a second request waits in the queue and leaves
$locker = lock_for($t, 'LOCK TABLE procedures IN ACCESS EXCLUSIVE MODE', 2);
my $holder = fork // die;
if ($holder == 0) {
    my $r = $t->get('/procedures/koseki');
    POSIX::_exit($r->{status} == 200 ? 0 : 1);
}
sleep 0.3;
my $log_before = length $t->error_log;
send_and_close("GET /procedures/juminhyo HTTP/1.1\r\nHost: x\r\n\r\n", 0.3);
ok(defined until_true(sub { substr($t->error_log, $log_before)
                            =~ /client went away/ }, 2),
   'a client that left while in the pool\'s queue is seen going');
waitpid($locker, 0);
waitpid($holder, 0);
is($? >> 8, 0, 'the request holding the connection is answered 200');
$after = health($t);
is($after->{pool}{waiting}, 0, 'nothing is left in the queue');
is($t->get('/procedures/juminhyo')->{status}, 200, 'and the next request is served');

# 3. while its password hashes in the thread pool (production cost)
my $lb = $t->browser;
$lb->get('/login');
my $form = $lb->form('/login') or BAIL_OUT('no login form');
my $body = ShinseiTest::Browser::urlencode([
    _csrf => $form->{hidden}{_csrf}, email => 'nobody@example.jp',
    password => 'not the password at all' ]);
$log_before = length $t->error_log;
for (1 .. 5) {
    send_and_close("POST /login HTTP/1.1\r\nHost: x\r\n"
                   . "Cookie: sid=" . $lb->cookie('sid') . "\r\n"
                   . "Content-Type: application/x-www-form-urlencoded\r\n"
                   . "Content-Length: " . length($body) . "\r\n\r\n$body",
                   0.02);
}
ok(defined until_true(sub { my @n = substr($t->error_log, $log_before)
                                    =~ /client went away/g; @n >= 5 }, 5),
   'five logins whose clients left while their passwords hashed are seen going');
sleep 1;
is($t->get('/login')->{status}, 200, 'the worker serves the next page afterwards');
$after = health($t);
is($after->{pool}{waiting}, 0, 'and holds nothing for them');

# 4. the same, and nginx told to stop at once: the worker waits for the
# hashes (a thread writes into their requests' memory), then frees them;
# done() fails on an "open socket left" alert
# (other addresses: five failures pause an address, and a paused one is
# not hashed at all)
$log_before = length $t->error_log;
for my $i (1 .. 5) {
    my $other = ShinseiTest::Browser::urlencode([
        _csrf => $form->{hidden}{_csrf}, email => "nobody$i\@example.jp",
        password => 'not the password at all' ]);
    send_and_close("POST /login HTTP/1.1\r\nHost: x\r\n"
                   . "Cookie: sid=" . $lb->cookie('sid') . "\r\n"
                   . "Content-Type: application/x-www-form-urlencoded\r\n"
                   . "Content-Length: " . length($other) . "\r\n\r\n$other",
                   0.02);
}
ok(defined until_true(sub { my @n = substr($t->error_log, $log_before)
                                    =~ /client went away/g; @n >= 5 }, 5),
   'five more clients leave while their passwords hash');

$t->done;

done_testing;
