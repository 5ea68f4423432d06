# The session cache (shinsei_session_cache): a logged-in page costs no
# query, and PostgreSQL stays the truth (REQ N-PERF-1, N-SEC-1): a miss
# reads the table; logout, a password change, leaving and timeouts end a
# session at once here and, by NOTIFY, on another node; nothing is served
# from the cache while the LISTEN connection is down; entries live at most
# their ttl; the once-a-minute touch of the row still happens.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

sub health {
    my ($t) = @_;
    return $t->json($t->get('/healthz')->{content});
}

# a second browser holding the same session (the same cookie)
sub same_session {
    my ($t, $b, %opt) = @_;
    my $c = $t->browser(%opt);
    $c->set_cookie('sid', $b->cookie('sid'));
    return $c;
}

sub logged_in {
    my ($r) = @_;
    return $r->{status} == 200 && $r->{text} =~ m{<h1>マイページ</h1>};
}

# until_like(browser, path, re, seconds): GETs until the page matches; the
# time it took, or undef
sub until_like {
    my ($b, $path, $re, $secs) = @_;
    my $t0 = time;
    while (time - $t0 < $secs) {
        return time - $t0 if $b->get($path)->{text} =~ $re;
        sleep 0.02;
    }
    return undef;
}

my $t = ShinseiTest->new(mail => 1, session_cache => '10m ttl=3s');

my $b = signed_up_resident($t, email => 'ichiro@example.jp');
ok(logged_in($b->get('/mypage')), 'the resident is logged in');

my $h0 = health($t);
ok($h0->{sessions}{serving}, '/healthz: the cache serves (LISTEN is up)');
cmp_ok($h0->{sessions}{entries}, '>=', 1, 'the session is kept');

# --- a logged-in page costs no query -------------------------------------

ok(logged_in($b->get('/mypage')), "my page ($_)") for 1 .. 5;
my $h1 = health($t);
is($h1->{counters}{queries} - $h0->{counters}{queries}, 1,
   'five views of my page made no query (the one counted is /healthz\'s)');
is($h1->{sessions}{hits} - $h0->{sessions}{hits}, 5, 'each was a hit');
like($b->get('/')->{text}, qr{葛城 太郎},
     'a page of the catalogue shows who is logged in, from the cache');

# --- a miss reads the table ---------------------------------------------

my $fresh = $t->browser;
log_in($t, $fresh, 'ichiro@example.jp');
my $m0 = health($t)->{sessions}{misses};
ok(logged_in($fresh->get('/mypage')), 'a second login of the resident');
is(health($t)->{sessions}{misses} - $m0, 1, 'its first page was a miss, read from the table');

# --- logout, at once ------------------------------------------------------

my $twin = same_session($t, $b);
ok(logged_in($twin->get('/mypage')), 'a copy of the cookie opens my page (cached)');
$b->get('/logout');
my $r = $b->submit_form('/logout', {});
is($r->{status}, 303, 'logout');
$r = $twin->get('/mypage');
is($r->{status}, 303, 'the very next request with the old cookie is not logged in');
like($r->{headers}{location} // '', qr{^/login}, '... and goes to the login page');

# --- a password change ends the other sessions at once ------------------

my ($one, $two) = ($t->browser, $t->browser);
log_in($t, $one, 'ichiro@example.jp');
log_in($t, $two, 'ichiro@example.jp');
ok(logged_in($one->get('/mypage')) && logged_in($two->get('/mypage')),
   'two sessions of the resident, both cached');
$one->get('/mypage/password');
$r = $one->submit_form('/mypage/password', {
    current_password => 'correct horse battery',
    password => 'another horse battery' });
is($r->{status}, 303, 'the password is changed in one');
isnt($two->get('/mypage')->{status}, 200, 'the other is logged out at once');
ok(logged_in($one->get('/mypage')), 'the one that changed it stays logged in');

# --- a name change shows at once ----------------------------------------

my $three = $t->browser;
log_in($t, $three, 'ichiro@example.jp', 'another horse battery');
ok(logged_in($three->get('/mypage')), 'a third session, cached');
$one->get('/mypage/name');
$one->submit_form('/mypage/name', { name => '葛城 一朗', name_kana => 'カツラギ イチロウ' });
like($three->get('/mypage')->{text}, qr{<dd>葛城 一朗</dd>},
     'another session shows the new name at once');

# --- leaving ends every session at once ---------------------------------

$three->get('/mypage/delete');
$r = $three->submit_form('/mypage/delete', { current_password => 'another horse battery' });
is($r->{status}, 303, 'the resident leaves');
isnt($one->get('/mypage')->{status}, 200, 'every other session of the account ends at once');

# --- entries live at most their ttl; the touch reaches the table ---------

my $b4 = signed_up_resident($t, email => 'shiro@example.jp');
ok(logged_in($b4->get('/mypage')), 'a new resident, cached');
my $sid = $t->psql("SELECT encode(id_hash, 'hex') FROM sessions s"
                   . " JOIN citizens c ON c.id = s.citizen_id");
$t->psql("UPDATE sessions SET last_seen_at = now() - interval '5 minutes'"
         . " WHERE id_hash = decode('$sid', 'hex')");
my $s0 = health($t)->{sessions};
ok(logged_in($b4->get('/mypage')), 'served from the cache meanwhile');
is(health($t)->{sessions}{hits} - $s0->{hits}, 1, '(a hit)');
sleep 3.2;
$s0 = health($t)->{sessions};
ok(logged_in($b4->get('/mypage')), 'past the ttl (3 s)');
is(health($t)->{sessions}{misses} - $s0->{misses}, 1,
   'the entry was gone: a miss, read from the table');
cmp_ok($t->psql("SELECT extract(epoch FROM now() - last_seen_at)::int"
                . " FROM sessions WHERE id_hash = decode('$sid', 'hex')"),
       '<', 10, 'and that read touched the row (last seen now, not 5 minutes ago)');

# --- a second node on the same database: NOTIFY ------------------------

my $node2 = ShinseiTest->new(share => $t, session_cache => '10m');
my $b5 = signed_up_resident($t, email => 'goro@example.jp');
ok(logged_in($b5->get('/mypage')), 'a resident logged in on node 1');
my $on2 = same_session($node2, $b5, port => $node2->port);
ok(logged_in($on2->get('/mypage')), 'the session opens my page on node 2');
my $hits2 = health($node2)->{sessions}{hits};
ok(logged_in($on2->get('/mypage')), 'and again');
is(health($node2)->{sessions}{hits} - $hits2, 1, 'from node 2\'s own cache (ttl 60 s)');

$b5->get('/mypage/name');
$b5->submit_form('/mypage/name', { name => '葛城 吾郎', name_kana => 'カツラギ ゴロウ' });
my $took = until_like($on2, '/mypage', qr{<dd>葛城 吾郎</dd>}, 5);
ok(defined $took, sprintf('a name changed on node 1 shows on node 2 (%.2f s, '
                          . 'by NOTIFY: well within its ttl of 60 s)',
                          $took // -1));

$b5->get('/logout');
$b5->submit_form('/logout', {});
my $t0 = time;
my $out = 0;
while (time - $t0 < 5) {
    if ($on2->get('/mypage')->{status} != 200) { $out = 1; last }
    sleep 0.02;
}
ok($out, sprintf('a logout on node 1 ends the session on node 2 (%.2f s)',
                 time - $t0));

# --- nothing is served while the LISTEN connection is down ---------------

my $b6 = signed_up_resident($node2, email => 'rokuro@example.jp');
ok(logged_in($b6->get('/mypage')), 'a resident on node 2, cached');
my $db = $t->{dbname};
my $pool = $t->psql_admin("SELECT count(*) FROM pg_stat_activity"
                          . " WHERE datname = '$db'"
                          . " AND application_name = 'ngx_shinsei'"
                          . " AND query NOT LIKE 'LISTEN%'");
# no new connection to the database: the LISTEN connection cannot come back
$t->psql_admin("ALTER DATABASE $db CONNECTION LIMIT " . ($pool + 1));
$t->psql_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
               . " WHERE datname = '$db' AND query LIKE 'LISTEN%'");
$t->psql_admin("ALTER DATABASE $db CONNECTION LIMIT $pool");
my $down = 0;
for (1 .. 100) {
    my $h = health($node2);
    if (!$h->{listening}) { $down = 1; last }
    sleep 0.05;
}
ok($down, 'node 2\'s LISTEN connection is down (and cannot come back)');
my $s2 = health($node2)->{sessions};
ok(!$s2->{serving}, '/healthz says the cache does not serve');
ok(logged_in($b6->get('/mypage')), 'pages still work, from the table');
ok(logged_in($b6->get('/mypage')), 'again');
my $s3 = health($node2)->{sessions};
is($s3->{hits} - $s2->{hits}, 0, 'no page was served from the cache');
cmp_ok($s3->{misses} - $s2->{misses}, '>=', 2, 'each read the table');
$t->psql_admin("ALTER DATABASE $db CONNECTION LIMIT -1");
my $up = 0;
for (1 .. 200) {
    my $h = health($node2);
    if ($h->{listening} && $h->{sessions}{serving}) { $up = 1; last }
    sleep 0.05;
}
ok($up, 'once it can, the LISTEN connection comes back and the cache serves');
cmp_ok(health($node2)->{sessions}{flushes}, '>', $s2->{flushes},
       'emptied when it came back: what was notified meanwhile is unknown');

$node2->done;
$t->done;

# --- idle and absolute timeouts are checked on every hit ---------------

$t = ShinseiTest->new(mail => 1, session_cache => '10m',
                      server_extra => 'shinsei_session_timeout 2s 4s;');
my $b7 = signed_up_resident($t, email => 'shichiro@example.jp');
ok(logged_in($b7->get('/mypage')), 'logged in, cached (idle 2 s, 4 s in all)');
sleep 2.3;
$r = $b7->get('/mypage');
is($r->{status}, 303, 'after 2 s idle the cached session has ended');
like($r->{headers}{location} // '', qr{expired=1}, '... and says it expired');

log_in($t, $b7, 'shichiro@example.jp');
my $ended;
$t0 = time;
while (time - $t0 < 6) {
    $r = $b7->get('/mypage');
    if ($r->{status} != 200) { $ended = time - $t0; last }
    sleep 0.5;
}
# the session's times are whole seconds, so its 4 s end 3 to 4 s after
# the login (and the loop looks every 0.5 s): past the idle time, which
# the requests every 0.5 s never let pass
ok(defined $ended && $ended >= 2.9 && $ended <= 4.7,
   sprintf('kept busy, the session ends at its absolute lifetime (%.1f s)',
           $ended // -1));

$t->done;

done_testing;
