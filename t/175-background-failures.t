# The background jobs say when their queries fail (REQ N-OPS-1, N-SEC-2):
# the outbox claim, the purge and a re-encryption batch log SQLSTATE and
# PostgreSQL's primary message at [error], never parameters, and /healthz
# counts the failures of each job; once the database is right again, the
# jobs go on by themselves.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use ShinseiTest;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new(mail => 1, http_extra => 'shinsei_purge_interval 1s;');

sub jobs { $t->json($t->get('/healthz')->{content})->{jobs} }

# log_until(RE, seconds): waits for a line of error.log written since the
# last call
my $seen = 0;
sub log_until {
    my ($re, $secs) = @_;
    my $t0 = time;
    my $from = $seen;
    $seen = length $t->error_log;
    while (time - $t0 < $secs) {
        my ($line) = grep { /$re/ } split /\n/, substr($t->error_log, $from);
        return $line if $line;
        sleep 0.1;
    }
    return undef;
}

my $j = jobs();
is_deeply([ map { $j->{$_}{failures} } qw(mail purge rekey) ], [0, 0, 0],
          '/healthz counts no failures of the jobs to begin with');

# --- the purge --------------------------------------------------------------

$t->psql('ALTER TABLE login_failures RENAME TO login_failures_away');
my $line = log_until(qr/\[error\].*shinsei: the purge failed/, 5);
like($line // '', qr/shinsei: the purge failed: relation "login_failures" does not exist \(SQLSTATE 42P01\)/,
     'a failed purge logs its SQLSTATE and the primary message at [error]');
cmp_ok(jobs()->{purge}{failures}, '>=', 1, '/healthz counts it');
$t->psql('ALTER TABLE login_failures_away RENAME TO login_failures');
my $after = jobs()->{purge}{failures};
ok(log_until(qr/\[info\].*shinsei: purged \d+ sessions/, 5),
   'with the table back, the purge runs again');
cmp_ok(jobs()->{purge}{failures} - $after, '<=', 1, 'and stops failing');

# --- the outbox claim -------------------------------------------------------

$t->psql('ALTER TABLE outbox RENAME TO outbox_away');
$t->psql('NOTIFY shinsei_outbox');
$line = log_until(qr/\[error\].*shinsei: the outbox claim failed/, 8);
like($line // '', qr/shinsei: the outbox claim failed: relation "outbox" does not exist \(SQLSTATE 42P01\)/,
     'a failed outbox claim logs its SQLSTATE and the primary message');
cmp_ok(jobs()->{mail}{failures}, '>=', 1, '/healthz counts it');
$t->psql('ALTER TABLE outbox_away RENAME TO outbox');

# --- a re-encryption batch --------------------------------------------------

$t->psql('ALTER FUNCTION rekey_batch(text, text, bigint, int)'
         . ' RENAME TO rekey_batch_away');
$line = log_until(qr/\[error\].*shinsei: reading a re-encryption batch failed/, 15);
like($line // '', qr/shinsei: reading a re-encryption batch failed: function rekey_batch\(.*\) does not exist \(SQLSTATE 42883\)/,
     'a failed re-encryption batch logs its SQLSTATE and the primary message');
cmp_ok(jobs()->{rekey}{failures}, '>=', 1, '/healthz counts it');
$t->psql('ALTER FUNCTION rekey_batch_away(text, text, bigint, int)'
         . ' RENAME TO rekey_batch');

# --- nothing but the message -----------------------------------------------

my @lines = grep { /shinsei: .* failed: .*SQLSTATE/ } split /\n/, $t->error_log;
ok(@lines >= 3, 'the failures were logged');
ok(!(grep { /DETAIL|\$\d|katsuragi/ } @lines),
   'with no detail and no parameter (the city, the timeouts, the key id)');

# the mail goes once the outbox is back
my $b = $t->browser;
$b->get('/password/forgot');
$b->submit_form('/password/forgot', { email => 'nobody@example.jp' });
is($t->get('/healthz')->{status}, 200, 'and the site serves throughout');

$t->done;

done_testing;
