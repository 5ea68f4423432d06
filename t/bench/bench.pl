#!/usr/bin/env perl
# ./build.sh bench: the catalogue page (one query, a rendered template)
# against a static file of the same nginx, at 64 and 1,000 connections,
# 2 workers, measured with wrk.  Prints req/s and p50/p99 for each run,
# each worker's RSS before and after, then:
#   bench: page_rps=N static_rps=N ratio=R p99_ms=N errors=N
# where the figures are those of the catalogue page at 1,000 connections;
# and then my page of logged-in residents (100 sessions, taken in turn by
# wrk's connections; the session cache of shinsei_session_cache serves
# them) at 1,000 connections, with the static file again in the same run:
#   bench-session: page_rps=N static_rps=N ratio=R p99_ms=N
#                  static_p99_ms=N errors=N

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/../lib";
use ShinseiTest;
use ShinseiTest::Flows;
use Test::More ();

our $duration = $ENV{SHINSEI_BENCH_SECONDS} || 10;
my $threads = $ENV{SHINSEI_BENCH_THREADS} || 2;

# the harness speaks TAP; keep its few checks quiet here
Test::More->builder->output(\*STDERR);
Test::More->builder->no_ending(1);

my $t = ShinseiTest->new(own_pg => 1, workers => 2, pool => 8,
                         log_level => 'warn', mail => 1,
                         access_log_opts => 'buffer=256k flush=1s');

my @workers = $t->worker_pids;

sub rss_kb {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/status") or return 0;
    while (my $line = <$fh>) {
        return $1 if $line =~ /^VmRSS:\s+(\d+)/;
    }
    return 0;
}

sub to_ms {
    my ($v, $unit) = @_;
    return $unit eq 'us' ? $v / 1000 : $unit eq 's' ? $v * 1000 : $v;
}

sub wrk {
    my ($path, $conns, $script) = @_;
    my $url = $t->url($path);
    my $lua = $script ? "-s $script" : '';
    my $out = `ulimit -n 20000 2>/dev/null; wrk -t$threads -c$conns -d${duration}s --latency $lua $url 2>&1`;
    my %r = (conns => $conns, path => $path);
    ($r{rps}) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    ($r{requests}) = $out =~ /(\d+) requests in/;
    for my $p (50, 99) {
        my ($v, $u) = $out =~ /^\s+$p%\s+([\d.]+)(us|ms|s)\s*$/m;
        $r{"p$p"} = defined $v ? to_ms($v, $u) : -1;
    }
    my $errors = 0;
    if ($out =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/) {
        $errors += $1 + $2 + $3 + $4;
    }
    $errors += $1 if $out =~ /Non-2xx or 3xx responses: (\d+)/;
    $r{errors} = $errors;
    die "wrk failed:\n$out" unless defined $r{rps};
    return \%r;
}

# warm up at the highest concurrency, so that what the workers hold for
# 1,000 connections (buffers, pools) is there before the first reading:
# what grows after it is what the requests leave behind
{
    local $duration = 3;
    wrk('/', 1000);
    wrk('/static/css/site.css', 1000);
}

my %rss_before = map { $_ => rss_kb($_) } @workers;

my @runs;
my $total = 0;
for my $conns (64, 1000) {
    for my $path ('/', '/static/css/site.css') {
        my $r = wrk($path, $conns);
        push @runs, $r;
        $total += $r->{requests};
        printf "%-22s %5d conns  %9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d\n",
            $path eq '/' ? 'catalogue page' : 'static file', $conns,
            $r->{rps}, $r->{p50}, $r->{p99}, $r->{errors};
    }
}

# the rest of the 100,000 requests, if the runs above fell short
while ($total < 100_000) {
    my $r = wrk('/', 64);
    $total += $r->{requests};
}

my %rss_after = map { $_ => rss_kb($_) } @workers;
for my $pid (@workers) {
    my $grew = $rss_after{$pid} - $rss_before{$pid};
    printf "worker %d RSS: %d kB before, %d kB after %d requests "
         . "(%+d kB, %.3f bytes per request)\n",
        $pid, $rss_before{$pid}, $rss_after{$pid}, $total, $grew,
        $grew * 1024 / $total;
}

my ($page) = grep { $_->{path} eq '/' && $_->{conns} == 1000 } @runs;
my ($static) = grep { $_->{path} ne '/' && $_->{conns} == 1000 } @runs;

# --- logged-in pages ------------------------------------------------------

# 100 sessions of one resident (each login is a session of its own)
my $b = signed_up_resident($t, email => 'bench@example.jp');
my @sids;
for (1 .. 100) {
    my $c = $t->browser;
    my $r = log_in($t, $c, 'bench@example.jp');
    die "login failed: $r->{status}\n" unless $r->{status} == 303;
    push @sids, $c->cookie('sid');
}

# the requests of wrk take the sessions in turn (each thread formats
# them once, in init)
my $lua = "$t->{dir}/sessions.lua";
open(my $fh, '>', $lua) or die "$lua: $!";
print $fh "local sids = {" . join(',', map { "\"$_\"" } @sids) . "}\n", <<'LUA';
local reqs = {}
local i = 0
function init(args)
  for k, sid in ipairs(sids) do
    reqs[k] = wrk.format(nil, nil, { Cookie = "sid=" .. sid })
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
LUA
close $fh;

# every session opens my page, before and after: a redirect to the login
# page (which wrk would count as a success) is an error here
sub wrong_pages {
    my $wrong = 0;
    for my $sid (@sids) {
        my $c = $t->browser;
        $c->set_cookie('sid', $sid);
        my $r = $c->get('/mypage');
        $wrong++ unless $r->{status} == 200
                        && $r->{text} =~ m{<h1>マイページ</h1>};
    }
    return $wrong;
}

my $wrong = wrong_pages();

{
    local $duration = 3;
    wrk('/mypage', 1000, $lua);
}
my $mypage = wrk('/mypage', 1000, $lua);
my $static2 = wrk('/static/css/site.css', 1000);
$mypage->{errors} += $wrong + wrong_pages();
my $cache = $t->json($t->get('/healthz')->{content})->{sessions};

printf "%-22s %5d conns  %9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d\n",
    'my page (logged in)', 1000, $mypage->{rps}, $mypage->{p50},
    $mypage->{p99}, $mypage->{errors};
printf "%-22s %5d conns  %9.0f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d\n",
    'static file', 1000, $static2->{rps}, $static2->{p50}, $static2->{p99},
    $static2->{errors};
printf "session cache (the zone, all workers): %d hits, %d misses, %d entries\n",
    $cache->{hits}, $cache->{misses}, $cache->{entries};

$t->done;

printf "bench: page_rps=%.0f static_rps=%.0f ratio=%.2f p99_ms=%.1f errors=%d\n",
    $page->{rps}, $static->{rps}, $page->{rps} / $static->{rps},
    $page->{p99}, $page->{errors};
printf "bench-session: page_rps=%.0f static_rps=%.0f ratio=%.2f p99_ms=%.1f "
     . "static_p99_ms=%.1f errors=%d\n",
    $mypage->{rps}, $static2->{rps}, $mypage->{rps} / $static2->{rps},
    $mypage->{p99}, $static2->{p99}, $mypage->{errors};
