# Password hashing runs in nginx's thread pool: with the production cost
# (scrypt N=2^15, r=8, p=3) and 20 logins hashing at once on one worker,
# the event loop still answers /healthz at once (DESIGN.md: "CPU-heavy
# work ... goes to nginx's thread pool, never onto the event loop"; REQ
# N-PERF-1: pages answer promptly under concurrent load).
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Encode qw(decode);
use HTTP::Tiny;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);
use ShinseiTest;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $LOGINS = 20;
my $LIMIT_MS = 50;

# SHINSEI_STRICT_LATENCY=1: every sample under 50 ms.  By default 90 % of
# them, the median under 25 ms (half the bar) and none over 1 s: on the shared two-CPU
# test machine, with the same 20 hashes run by "openssl kdf" in other
# processes and nginx hashing nothing, 10 to 15 of ~176 samples took over
# 50 ms (the longest 434 ms).  That hashing stays off the event loop is
# proven exactly, whatever the machine, by the CPU time of its thread.
# Medians seen: 0.6 to 8.4 ms; a hash on the event loop would put it in
# the hundreds.
my $STRICT = $ENV{SHINSEI_STRICT_LATENCY};

# cpu_ms(PID, TID): the CPU time (user + system) of one thread, in ms
sub cpu_ms {
    my ($pid, $tid) = @_;
    open(my $fh, '<', "/proc/$pid/task/$tid/stat") or return 0;
    my $stat = <$fh>;
    $stat =~ s/^.*\) //s;                 # after "pid (comm) "
    my @f = split ' ', $stat;
    return ($f[11] + $f[12]) * 1000 / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

# cpu_by_thread(PID): { tid => ms } for every thread of the process
sub cpu_by_thread {
    my ($pid) = @_;
    opendir(my $dh, "/proc/$pid/task") or return {};
    return { map { $_ => cpu_ms($pid, $_) } grep { /^\d+$/ } readdir $dh };
}

my $t = ShinseiTest->new(kdf => 'ln=15 r=8 p=3', workers => 1);
my $dir = $t->{dir};

# one keep-alive connection for the samples, warmed up: the city and a
# database connection are loaded, so a sample measures the event loop only
my $probe = HTTP::Tiny->new(keep_alive => 1, timeout => 10);
my $health = $t->url('/healthz');
is($probe->get($t->url('/'))->{status}, 200, 'the catalogue answers');
is($probe->get($health)->{status}, 200, '/healthz answers before the logins')
    for 1 .. 3;

# 20 sessions with their CSRF tokens, so every login reaches the hashing
my $conf = '';
for my $i (1 .. $LOGINS) {
    my $b = $t->browser;
    $b->get('/login');
    my $form = $b->form('/login') or BAIL_OUT('no login form');
    my $body = ShinseiTest::Browser::urlencode([
        _csrf => $form->{hidden}{_csrf},
        email => "nobody$i\@example.jp",
        password => "not-a-real-password-$i" ]);
    $conf .= join("\n",
        'url = "' . $t->url('/login') . '"',
        'cookie = "sid=' . $b->cookie('sid') . '"',
        'header = "Content-Type: application/x-www-form-urlencoded"',
        "data-raw = \"$body\"",
        "output = \"$dir/login-$i.html\"",
        'write-out = "%{http_code} %{time_total}\n"',
        ($i < $LOGINS ? 'next' : ()), '') . "\n";
}
open(my $fh, '>', "$dir/logins.curl") or die $!;
print $fh $conf;
close $fh;

my ($worker) = $t->worker_pids;
ok($worker, 'one worker process');
my $cpu_before = cpu_by_thread($worker);

# start them all at once, and sample /healthz while they hash
my $start = time;
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    open(STDOUT, '>', "$dir/logins.out") or POSIX::_exit(1);
    open(STDERR, '>', "$dir/logins.err") or POSIX::_exit(1);
    exec('curl', '-s', '--no-progress-meter', '--parallel', '--parallel-immediate',
         '--parallel-max', $LOGINS, '-K', "$dir/logins.curl")
        or POSIX::_exit(127);
}

my @samples;
while (waitpid($pid, WNOHANG) == 0) {
    my $t0 = time;
    my $r = $probe->get($health);
    push @samples, { at => $t0 - $start, ms => (time - $t0) * 1000,
                     status => $r->{status} };
    sleep 0.03;
    last if time - $start > 60;
}
my $end = time - $start;
is($?, 0, 'curl ran the logins');

# when each login ended, from curl's own timing
open($fh, '<', "$dir/logins.out") or die $!;
my @results = map { [ split ' ' ] } grep { /\S/ } <$fh>;
close $fh;
is(scalar @results, $LOGINS, "$LOGINS logins were answered");
is(scalar(grep { $_->[0] eq '422' } @results), $LOGINS, 'each with 422');

my $refused = grep {
    my $html = decode('UTF-8', $t->slurp("$dir/login-$_.html"));
    $html =~ /メールアドレスまたはパスワードが正しくありません/;
} 1 .. $LOGINS;
is($refused, $LOGINS, 'each after checking the password (the login failure '
                    . 'message, not a CSRF refusal)');

my @done = sort { $a <=> $b } map { $_->[1] } @results;
my ($first_done, $last_done) = ($done[0], $done[-1]);
diag(sprintf('logins: first answered after %.0f ms, last after %.0f ms; '
             . '%d /healthz samples', $first_done * 1000, $last_done * 1000,
             scalar @samples));

cmp_ok($last_done, '>=', 0.5,
       sprintf('the %d logins hashed for several hundred ms at least '
               . '(%.0f ms)', $LOGINS, $last_done * 1000));

# the samples taken while hashing was under way (no login answered yet
# means all 20 were still hashing or queued for a thread)
my @during = grep { $_->{at} + $_->{ms} / 1000 < $last_done - 0.02 } @samples;
my @all_hashing = grep { $_->{at} + $_->{ms} / 1000 < $first_done } @samples;
cmp_ok(scalar @during, '>=', 10,
       sprintf('at least 10 /healthz samples fell within the hashing '
               . '(%d)', scalar @during));
cmp_ok(scalar @all_hashing, '>=', 3,
       sprintf('some while no login had been answered yet (%d)',
               scalar @all_hashing));
ok(@during && $during[0]{at} < $last_done * 0.25
   && $during[-1]{at} > $last_done * 0.75,
   'the samples are spread over the whole hashing period');

# the event loop's own thread did not hash: its CPU time is that of
# parsing, routing and rendering, the hashing's went to the pool threads
my $cpu_after = cpu_by_thread($worker);
my $loop_ms = $cpu_after->{$worker} - $cpu_before->{$worker};
my $pool_ms = 0;
for my $tid (keys %$cpu_after) {
    next if $tid == $worker;
    $pool_ms += $cpu_after->{$tid} - ($cpu_before->{$tid} // 0);
}
diag(sprintf('CPU during the logins: event loop thread %.0f ms, other '
             . 'threads (the thread pool) %.0f ms', $loop_ms, $pool_ms));
cmp_ok($pool_ms, '>=', $LOGINS * 50,
       sprintf('the %d hashes ran in the thread pool (%.0f ms of CPU in its '
               . 'threads)', $LOGINS, $pool_ms));
cmp_ok($loop_ms, '<', 150,
       sprintf('the event loop thread spent less CPU than one hash costs '
               . '(%.0f ms)', $loop_ms));

my @ms = sort { $a <=> $b } map { $_->{ms} } @during;
my $median = $ms[@ms / 2] // 0;
diag(sprintf('/healthz during hashing: median %.1f ms, 90th %.1f ms, '
             . 'max %.1f ms', $median, $ms[int(@ms * 0.9)] // 0, $ms[-1] // 0));

is(scalar(grep { $_->{status} != 200 } @during), 0,
   'every sample during the hashing answered 200 (N-PERF-1)');

my @slow = grep { $_->{ms} >= $LIMIT_MS } @during;
my $slow_text = join "\n", map { sprintf('at %.0f ms: %.1f ms',
                                         $_->{at} * 1000, $_->{ms}) } @slow;
if ($STRICT) {
    is(scalar @slow, 0, "every sample answered in under $LIMIT_MS ms")
        or diag($slow_text);
} else {
    cmp_ok(scalar @slow, '<=', @during / 10,
           "at least 90 % of the samples answered in under $LIMIT_MS ms ("
           . (@during - @slow) . ' of ' . scalar(@during) . ')')
        or diag($slow_text);
    cmp_ok($median, '<', $LIMIT_MS / 2,
           sprintf('the median sample took under %d ms (%.1f ms)',
                   $LIMIT_MS / 2, $median));
    cmp_ok($ms[-1] // 0, '<', 1000, 'no sample waited a second');
    diag("samples over $LIMIT_MS ms (machine jitter; "
         . "SHINSEI_STRICT_LATENCY=1 fails on them):\n$slow_text") if @slow;
}

$t->done;
done_testing;
