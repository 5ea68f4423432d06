#!/usr/bin/env perl
# Mail throughput: how fast two workers drain the outbox into the local
# SMTP sink (t/lib/shinsei_smtp_sink.py, aiosmtpd on loopback).
#
#   perl t/bench/mail.pl [N]          (N, default 2000; or SHINSEI_BENCH_MAILS)
#
# The mails are real ones: SEED residents sign up through the form (their
# verification mails, built and encrypted by the module, are sent and
# checked), then N copies of those mails are queued in one transaction
# with the application's own enqueue_mail(), each with its own key and
# Message-ID, cycling over the SEED recipients.  The clock starts before
# that transaction and stops when no row is pending or sending.  The sink
# is then checked: N messages, N distinct Message-IDs, those of the outbox.
#
# Prints the steps, and last:
#   mail: mails=N seconds=S rate=R per_s

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Time::HiRes qw(sleep time);
use ShinseiTest;
use ShinseiTest::Accounts qw(sign_up outbox_status_counts wait_outbox_settled);
use Test::More ();

my $n = $ARGV[0] || $ENV{SHINSEI_BENCH_MAILS} || 2000;
my $seed = $ENV{SHINSEI_BENCH_SEED} || 20;
die "usage: $0 [N]\n" unless $n =~ /^\d+$/ && $n > 0;

# the harness speaks TAP; keep its few checks quiet here
Test::More->builder->output(\*STDERR);
Test::More->builder->no_ending(1);
binmode(STDOUT, ':encoding(UTF-8)');
$| = 1;

my $t = ShinseiTest->new(own_pg => 1, workers => 2, pool => 8, mail => 1,
                         log_level => 'warn');
my $mail = $t->mail;

# --- SEED real mails, from the form --------------------------------------

my @emails = map { sprintf 'bench%02d@example.jp', $_ } 1 .. $seed;
for my $email (@emails) {
    sign_up($t, $email, undef, undef, 15)
        or die "no verification mail for $email\n";
}
wait_outbox_settled($t, timeout => 30) or die "the seed mails are not sent\n";
my $seeded = $t->psql("SELECT count(*) FROM outbox WHERE status = 'sent'");
die "expected $seed seed mails, have $seeded\n" unless $seeded == $seed;
print "seed: $seed residents signed up, their $seed mails sent\n";
$mail->clear;

# --- N mails in one transaction, then the drain --------------------------

my $t0 = time;
$t->psql(<<"SQL");
BEGIN;
SELECT count(enqueue_mail(o.city, 'bench:' || g,
           jsonb_build_object('recipient_enc', o.recipient_enc,
                              'from_addr', o.from_addr,
                              'from_name', o.from_name,
                              'subject', o.subject,
                              'body_enc', o.body_enc)))
FROM generate_series(0, $n - 1) g
JOIN (SELECT row_number() OVER (ORDER BY id) - 1 AS i, * FROM outbox) o
  ON o.i = g % $seed;
COMMIT;
SQL
my $enqueued = time - $t0;
my $queued = $t->psql("SELECT count(*) FROM outbox WHERE key LIKE 'bench:%'");
die "expected $n queued, have $queued\n" unless $queued == $n;
printf "enqueue: %d mails in one transaction in %.3f s\n", $n, $enqueued;

my ($last_report, $done) = (time, 0);
my $until = time + 600;
while (time < $until) {
    my $c = outbox_status_counts($t);
    if (!$c->{pending} && !$c->{sending}) {
        $done = 1;
        last;
    }
    if (time - $last_report >= 2) {
        printf "  %.1f s: %s\n", time - $t0,
            join(' ', map { "$_=$c->{$_}" } sort keys %$c);
        $last_report = time;
    }
    sleep 0.02;
}
my $seconds = time - $t0;
die "the outbox did not drain in 600 s\n" unless $done;

# --- check what arrived ----------------------------------------------------

my $c = outbox_status_counts($t);
my $sent = $c->{sent} // 0;
my @files = $mail->files;
my %ids;
# parsed by the harness: the module folds the Message-ID header
for my $m ($mail->messages) {
    $ids{$1}++ if $m->{message_id} =~ /^<([^>]+)>$/;
}
my %outbox_ids = map { $_ => 1 } split /\n/,
    $t->psql("SELECT message_id FROM outbox WHERE key LIKE 'bench:%'");
my $foreign = grep { !$outbox_ids{$_} } keys %ids;
printf "drain: %d sent, %d dead; sink holds %d messages, %d distinct "
       . "Message-IDs, %d not from this run\n",
       $sent - $seed, $c->{dead} // 0, scalar @files, scalar keys %ids,
       $foreign;
warn "warning: the sink did not get every mail exactly once\n"
    unless @files == $n && keys %ids == $n && !$foreign;

$t->done;

printf "mail: mails=%d seconds=%.2f rate=%.0f per_s\n",
       $n, $seconds, $n / $seconds;
