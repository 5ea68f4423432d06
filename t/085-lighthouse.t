# Lighthouse 12 (t/browser/lighthouse.mjs, in Debian's Chromium) on the
# catalogue, a procedure page and the login page: accessibility, best
# practices and SEO each score 1.0.  Performance is printed, not
# asserted: on a shared machine it says more about the machine.
#
# All three can reach 1.0 here: Lighthouse takes http://127.0.0.1 as a
# secure origin (is-on-https), and the pages need nothing from the
# network.  robots.txt is not there (404), which Lighthouse counts as
# not applicable.
#
#   prove -I t/lib t/085-lighthouse.t
#   node t/browser/lighthouse.mjs http://127.0.0.1:PORT /signup   # by hand
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use ShinseiTest;
use ShinseiTest::BrowserTools qw(missing_tools $INSTALL);

my $dir = "$FindBin::Bin/browser";

my @missing = missing_tools($dir);
if (@missing) {
    fail('Lighthouse can run');
    diag("$_") for @missing;
    diag("run $INSTALL");
    done_testing;
    exit;
}

my $t = ShinseiTest->new;
my @pages = ('/', '/procedures/koseki', '/login');
my @asserted = ('accessibility', 'best-practices', 'seo');

my $errfile = "$t->{dir}/lighthouse.stderr";
open(my $saved, '>&', \*STDERR) or die "dup STDERR: $!";
open(STDERR, '>', $errfile) or die "$errfile: $!";
my $pid = open(my $out, '-|', 'node', "$dir/lighthouse.mjs", $t->url(''),
               @pages);
open(STDERR, '>&', $saved) or die "restore STDERR: $!";
$pid or BAIL_OUT("cannot run node: $!");

my $json = JSON::PP->new->utf8;
my ($done, %seen);
{
    # lighthouse.mjs stops itself after LIGHTHOUSE_TIMEOUT_MS (300 s);
    # this is the fence if node itself hangs
    local $SIG{ALRM} = sub { diag('lighthouse.mjs ran over 360 s; killing it');
                             kill 'TERM', $pid };
    alarm 360;
    while (my $line = <$out>) {
        my $m = eval { $json->decode($line) };
        if (!$m) {
            note("lighthouse.mjs: $line");
        } elsif ($m->{type} eq 'page') {
            my $path = $m->{path};
            $seen{$path} = 1;
            note(sprintf('%s: Lighthouse %s, %s', $path, $m->{lighthouse},
                         join(', ', map { "$_ " . ($m->{scores}{$_} // '-') }
                                    sort keys %{ $m->{scores} })));
            for my $cat (@asserted) {
                is($m->{scores}{$cat}, 1, "$path: Lighthouse $cat scores 1.0")
                    or diag(join("\n", map { "$_->{id}: $_->{title} ($_->{score}"
                                            . ($_->{displayValue}
                                               ? ", $_->{displayValue}" : '')
                                            . ')' }
                                       @{ $m->{failing}{$cat} || [] }));
            }
        } elsif ($m->{type} eq 'done') {
            $done = $m;
        }
    }
    alarm 0;
}
close $out;
my $status = $? >> 8;

ok($done && $status == 0 && (grep { $seen{$_} } @pages) == @pages,
   'Lighthouse audited every page')
    or diag("lighthouse.mjs exited $status:\n" . $t->slurp($errfile));

$t->done;
done_testing;
