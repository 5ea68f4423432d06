#!/usr/bin/env perl
# Re-encryption after a data key rotation: how fast worker 0 moves every
# value under the old key to the new one, and how the event loop answers
# meanwhile (the job runs on it: AES-GCM on short strings).
#
#   perl t/bench/rekey.pl [N]      (N accounts, default 30000; 3 values each)
#
# One resident signs up through the form; N copies of that account's row
# are inserted (the associated data of each value is its column name, so
# the copies decrypt).  Then a key is appended and nginx reloaded; the
# clock runs from the first value seen under the new key to the moment
# none is left under the old one, while /healthz is sampled on one
# keep-alive connection.
#
# Prints the steps, and last:
#   rekey: values=N seconds=S rate=R per_s healthz_p50_ms=M healthz_max_ms=M

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HTTP::Tiny;
use Time::HiRes qw(sleep time);
use ShinseiTest;
use ShinseiTest::Accounts qw(sign_up);
use Test::More ();

my $n = $ARGV[0] || 30000;
die "usage: $0 [N]\n" unless $n =~ /^\d+$/ && $n > 0;

Test::More->builder->output(\*STDERR);
Test::More->builder->no_ending(1);
$| = 1;

# purge_interval 1s: the first pass starts 1 s after the reload
my $t = ShinseiTest->new(own_pg => 1, workers => 2, mail => 1,
                         log_level => 'notice',
                         http_extra => 'shinsei_purge_interval 1s;');

sign_up($t, 'rekey.bench@example.jp') or die "no verification mail\n";
$t->psql(<<"SQL");
INSERT INTO citizens (city, email_index, email_enc, name_enc, name_kana_enc,
                      password_hash)
SELECT c.city, decode(md5('b' || g) || md5('b' || g || 'x'), 'hex'),
       c.email_enc, c.name_enc, c.name_kana_enc, c.password_hash
FROM citizens c, generate_series(1, $n) g
WHERE c.id = (SELECT min(id) FROM citizens);
SQL
# every value under k1: the accounts' three, and the two of the
# verification mail in the outbox
my $left_sql = "SELECT (SELECT count(*) FILTER (WHERE email_enc LIKE 'k1:%')"
    . " + count(*) FILTER (WHERE name_enc LIKE 'k1:%')"
    . " + count(*) FILTER (WHERE name_kana_enc LIKE 'k1:%') FROM citizens)"
    . " + (SELECT count(*) FILTER (WHERE recipient_enc LIKE 'k1:%')"
    . " + count(*) FILTER (WHERE body_enc LIKE 'k1:%') FROM outbox)";
my $values = $t->psql($left_sql);
print "seed: ", $t->psql("SELECT count(*) FROM citizens"),
      " accounts, $values values under k1\n";

open(my $fh, '>>', "$t->{dir}/data.keys") or die $!;
printf $fh "key k2 %s\n", join '', map { sprintf '%02x', int rand 256 } 1 .. 32;
close $fh;

my $probe = HTTP::Tiny->new(keep_alive => 1, timeout => 10);
$probe->get($t->url('/healthz'));
$t->reload;
sleep 0.5;                 # the new workers take over the listening socket

my ($start, $end, @ms);
my $until = time + 600;
my $next_count = 0;
while (time < $until) {
    my $s = time;
    my $r = $probe->get($t->url('/healthz'));
    push @ms, (time - $s) * 1000 if $start;
    die "/healthz answered $r->{status}\n" unless $r->{status} == 200;
    if (time >= $next_count) {
        my $left = $t->psql($left_sql);
        $start //= time if $left < $values;
        if ($left == 0) { $end = time; last }
        $next_count = time + 0.05;
    }
    sleep 0.01;
}
die "the values were not all re-encrypted in time\n" unless $end;

my $seconds = $end - $start;
@ms = sort { $a <=> $b } @ms;
my $log = $t->error_log;
my ($logged) = $log =~ /re-encrypted (\d+) values under the data key "k2"/;
print "log: re-encrypted ", $logged // '?', " values\n";
printf "healthz during the pass: %d samples\n", scalar @ms;
printf "rekey: values=%d seconds=%.2f rate=%.0f per_s healthz_p50_ms=%.1f "
       . "healthz_max_ms=%.1f\n", $values, $seconds,
       $values / ($seconds || 0.001), $ms[@ms / 2] // 0, $ms[-1] // 0;

$t->stop;
