package ShinseiTest::BrowserTools;

# What the tests in a real browser need (t/080-browser.t, 085-lighthouse.t):
# Node 20 or later, Debian's Chromium, and t/browser/node_modules as
# package-lock.json pins it.  Missing, they fail those tests; they never
# skip them.  t/browser/install.sh installs all of it.

use strict;
use warnings;

use Exporter qw(import);
use JSON::PP;

our @EXPORT_OK = qw(missing_tools read_json $CHROMIUM $INSTALL);

our $CHROMIUM = $ENV{SHINSEI_CHROMIUM} || '/usr/bin/chromium';
our $INSTALL = 't/browser/install.sh (as root; ./build.sh build runs it)';

# missing_tools(DIR): what is missing for the scripts of DIR (t/browser),
# one sentence each; empty when all is there
sub missing_tools {
    my ($dir) = @_;
    my @missing;

    my $node = `node --version 2>/dev/null` // '';
    if ($node !~ /^v(\d+)\./) {
        push @missing, 'node is not installed (apt-get install nodejs npm)';
    } elsif ($1 < 20) {
        chomp $node;
        push @missing, "node $node is too old; playwright-core needs 20 or later";
    }
    push @missing, "$CHROMIUM is missing" unless -x $CHROMIUM;

    # node_modules must hold exactly what package-lock.json pins
    my $lock = eval { read_json("$dir/package-lock.json") };
    if (!$lock) {
        push @missing, "cannot read t/browser/package-lock.json: $@";
        return @missing;
    }
    for my $key (sort grep { m{^node_modules/} } keys %{ $lock->{packages} }) {
        my $want = $lock->{packages}{$key}{version};
        my $have = eval { read_json("$dir/$key/package.json")->{version} };
        if (!defined $have) {
            push @missing, "t/browser/$key is not installed";
        } elsif ($have ne $want) {
            push @missing, "t/browser/$key is $have, package-lock.json pins $want";
        }
    }
    return @missing;
}

sub read_json {
    my ($file) = @_;
    open(my $fh, '<', $file) or die "$file: $!\n";
    local $/;
    return JSON::PP->new->utf8->decode(<$fh>);
}

1;
