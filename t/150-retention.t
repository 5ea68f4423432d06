# Data kept no longer than needed (REQ N-PRIV-1): ended sessions, old
# failed logins, long-expired tokens and old sent mails are purged.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new(mail => 1, workers => 2);

signed_up_resident($t, email => 'keep@example.jp');
signed_up_resident($t, email => 'old@example.jp');
mail_for($t, 'old@example.jp', qr/確認/);

my $old = "(SELECT id FROM citizens ORDER BY id DESC LIMIT 1)";
$t->psql(<<"SQL");
UPDATE sessions SET last_seen_at = now() - interval '31 minutes' WHERE citizen_id = $old;
INSERT INTO sessions (id_hash, city, created_at, last_seen_at)
  VALUES (sha256('ancient'), 'katsuragi', now() - interval '13 hours', now());
INSERT INTO login_failures (city, email_index, at)
  SELECT city, email_index, t FROM citizens,
    (VALUES (now() - interval '2 days'), (now())) AS v(t) WHERE id = $old;
UPDATE tokens SET expires_at = now() - interval '8 days' WHERE citizen_id = $old;
UPDATE outbox SET sent_at = now() - interval '31 days'
  WHERE id = (SELECT min(id) FROM outbox WHERE status = 'sent');
SQL

my %before = map { $_ => $t->psql("SELECT count(*) FROM $_") } qw(sessions login_failures tokens outbox);

$t->stop;
$t->{http_extra} = 'shinsei_purge_interval 1s;';
$t->start;

my $t0 = time;
while (time - $t0 < 10) {
    last if $t->error_log =~ /shinsei: purged/;
    sleep 0.2;
}
like($t->error_log, qr/shinsei: purged 2 sessions, 1 failed logins, 1 tokens, 1 mails/,
     'one worker purges and says how much');
is($t->psql("SELECT count(*) FROM sessions"), $before{sessions} - 2,
   'the sessions idle over 30 minutes or older than 12 hours are gone');
is($t->psql("SELECT count(*) FROM sessions WHERE citizen_id = (SELECT min(id) FROM citizens)"), 1,
   'a live session stays');
is($t->psql("SELECT count(*) FROM login_failures"), 1, 'failed logins older than a day are gone, recent ones stay');
is($t->psql("SELECT count(*) FROM tokens"), $before{tokens} - 1, 'tokens expired a week ago are gone');
is($t->psql("SELECT count(*) FROM outbox"), $before{outbox} - 1, 'mails sent a month ago are gone');

sleep 1.5;
my @runs = $t->error_log =~ /shinsei: purged/g;
cmp_ok(scalar @runs, '>=', 2, 'it runs again on its interval');

$t->done;
done_testing;
