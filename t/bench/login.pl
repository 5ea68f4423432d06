#!/usr/bin/env perl
# The login benchmark (not a test): a verified account per client, made
# through the site (sign-up, the verification mail, its link), then logins
# from several concurrent clients for a while (each: GET /login for the
# session and the token, POST /login, a 303 to /mypage expected) with the
# production password cost, scrypt ln=15 r=8 p=3, on 2 workers.
#
# Two runs: nginx's "default" thread pool (32 threads per worker; the
# harness has no thread_pool line) and conf/nginx.conf's pool of 2
# threads per worker ("thread_pool shinsei threads=2 max_queue=512;" in
# the main context, which the harness has no hook for: a subclass adds
# the line to the written nginx.conf).  Prints logins/s and p50/p99 of
# each, and last:
#   login: kdf=ln15,r8,p3 logins_per_s=N p99_ms=N
# with the figures of the default pool.
#
#   perl t/bench/login.pl
#   SHINSEI_BENCH_SECONDS=10 SHINSEI_BENCH_CLIENTS=8 perl t/bench/login.pl

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/../lib";
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use ShinseiTest;
use Test::More ();

my $duration = $ENV{SHINSEI_BENCH_SECONDS} || 10;
my $clients = $ENV{SHINSEI_BENCH_CLIENTS} || 8;
my $KDF = 'ln=15 r=8 p=3';

# the harness speaks TAP; keep its few checks quiet here
Test::More->builder->output(\*STDERR);
Test::More->builder->no_ending(1);

binmode(STDOUT, ':encoding(UTF-8)');


# a harness with a line for the main context of nginx.conf
package LoginBench::Harness {
    our @ISA = ('ShinseiTest');

    sub write_config {
        my ($self) = @_;
        $self->SUPER::write_config;
        return unless $self->{main_extra};
        my $file = "$self->{dir}/nginx.conf";
        my $conf = $self->slurp($file);
        $conf =~ s/^(worker_processes [^\n]*\n)/$1$self->{main_extra}\n/m
            or die "no worker_processes line in $file\n";
        open(my $fh, '>', $file) or die "$file: $!";
        print $fh $conf;
        close $fh;
    }
}


# account(T, I): signs up, follows the mail's link, presses the button;
# returns (email, password).  One account per client: logins of one
# account at once are counted as attempts until each succeeds, and more
# than 5 in flight would pause the address (U-AUTH-1, ASVS 2.2.1).
sub account {
    my ($t, $i) = @_;
    my ($email, $password) = ("bench$i\@example.jp", 'Bench-login-2024!');
    my $b = $t->browser;

    my $r = $b->submit_form('/signup', {
        name => '葛城 計測', name_kana => 'カツラギ ケイソク',
        email => $email, password => $password });
    $r->{status} == 303 or die "sign-up: $r->{status}\n$r->{text}\n";

    my $mail = $t->mail->wait_for(count => 1, to => $email, timeout => 30)
        or die "no verification mail\n";
    my ($link) = grep { m{/verify\?t=} } @{ $mail->{links} }
        or die "no link in the mail:\n$mail->{body}\n";

    $b->get($link);
    $r = $b->submit_form('/verify', {});
    ($r->{status} == 303 && $r->{headers}{location} =~ /m=verified/)
        or die "verify: $r->{status} " . ($r->{headers}{location} // '') . "\n";

    return ($email, $password);
}

# one client: logins until the deadline; one line per login
# "offset_s total_ms post_ms status"
sub client {
    my ($t, $email, $password, $start, $until, $out) = @_;
    open(my $fh, '>', $out) or die "$out: $!";
    sleep($start - time) if $start > time;
    while (time < $until) {
        my $b = $t->browser;
        my $t0 = time;
        my $form = $b->get('/login');
        my $t1 = time;
        my $r = $form->{status} == 200
            ? $b->submit_form('/login', { email => $email,
                                          password => $password })
            : $form;
        my $t2 = time;
        my $ok = $r->{status} == 303
                 && ($r->{headers}{location} // '') eq '/mypage';
        printf $fh "%.4f %.2f %.2f %s\n", $t0 - $start, ($t2 - $t0) * 1000,
            ($t2 - $t1) * 1000, $ok ? 'ok' : $r->{status};
    }
    close $fh;
}

sub percentile {
    my ($sorted, $p) = @_;
    return 0 unless @$sorted;
    my $i = int($p / 100 * @$sorted + 0.5) - 1;
    $i = 0 if $i < 0;
    $i = $#$sorted if $i > $#$sorted;
    return $sorted->[$i];
}

sub run {
    my ($label, %opt) = @_;

    my $t = LoginBench::Harness->new(mail => 1, workers => 2, pool => 8,
                                     kdf => $KDF, log_level => 'warn',
                                     %opt);
    my @accounts = map { [ account($t, $_) ] } 1 .. $clients;

    # a first login, so connections and caches are warm
    my $w = $t->browser;
    my $r = $w->submit_form('/login', { email => $accounts[0][0],
                                        password => $accounts[0][1] });
    $r->{status} == 303 or die "warm-up login: $r->{status}\n";

    my $start = time + 0.5;
    my $until = $start + $duration;
    my @kids;
    for my $i (1 .. $clients) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            client($t, @{ $accounts[$i - 1] }, $start, $until,
                   "$t->{dir}/client-$i");
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    waitpid($_, 0) for @kids;
    my $elapsed = time - $start;

    my (@total, @post, %fail);
    for my $i (1 .. $clients) {
        open(my $fh, '<', "$t->{dir}/client-$i") or next;
        while (<$fh>) {
            my ($at, $total, $post, $status) = split;
            if ($status eq 'ok') {
                push @total, $total;
                push @post, $post;
            } else {
                $fail{$status}++;
            }
        }
    }
    @total = sort { $a <=> $b } @total;
    @post = sort { $a <=> $b } @post;

    my $res = {
        label => $label,
        logins => scalar @total,
        per_s => @total / $elapsed,
        p50 => percentile(\@total, 50),
        p99 => percentile(\@total, 99),
        post_p50 => percentile(\@post, 50),
        post_p99 => percentile(\@post, 99),
        failures => join(' ', map { "$_ x$fail{$_}" } sort keys %fail) || 'none',
    };

    printf "%-34s %5d logins in %4.1f s  %6.2f logins/s  "
           . "p50 %6.0f ms  p99 %6.0f ms  (POST alone p50 %6.0f ms, p99 %6.0f ms)  "
           . "failures: %s\n",
        $label, $res->{logins}, $elapsed, $res->{per_s}, $res->{p50},
        $res->{p99}, $res->{post_p50}, $res->{post_p99}, $res->{failures};

    $t->done;
    return $res;
}

chomp(my $cpus = `nproc`);
printf "login benchmark: kdf %s, 2 workers, %d clients, %d s per run, "
       . "%s CPUs\n", $KDF, $clients, $duration, $cpus;

# the same hash by OpenSSL's command, as many at once as clients: what
# the machine can do at this moment (other work on it counts too)
sub baseline {
    my $t0 = time;
    my @kids;
    for (1 .. $clients) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open(STDOUT, '>', '/dev/null');
            exec('openssl', 'kdf', '-keylen', '32', '-kdfopt', 'pass:password',
                 '-kdfopt', 'salt:0123456789abcdef', '-kdfopt', 'n:32768',
                 '-kdfopt', 'r:8', '-kdfopt', 'p:3',
                 '-kdfopt', 'maxmem_bytes:64000000', 'SCRYPT')
                or POSIX::_exit(127);
        }
        push @kids, $pid;
    }
    waitpid($_, 0) for @kids;
    my $took = time - $t0;
    open(my $fh, '<', '/proc/loadavg');
    my ($load) = split ' ', <$fh> // '';
    printf "%-34s %d scrypt hashes at once in %.2f s: %.2f hashes/s "
           . "(load average %s)\n", 'baseline (openssl kdf, no nginx)',
           $clients, $took, $clients / $took, $load // '?';
}

baseline();
my $small = run('thread_pool 2 threads per worker',
                main_extra => 'thread_pool shinsei threads=2 max_queue=512;',
                http_extra => '    shinsei_thread_pool shinsei;');
my $default = run('default thread pool (32 per worker)');
baseline();

printf "login: kdf=ln15,r8,p3 logins_per_s=%.1f p99_ms=%.0f\n",
    $default->{per_s}, $default->{p99};
