# The floors of the sources (README.md, Architecture): a file calls only
# functions of files on its own floor or below, so no lower layer calls up
# into a step, a page or the handler.  The table of the README is the
# truth this reads, and every source file must be in it.
use strict;
use warnings;
use FindBin;
use Test::More;

my $top = "$FindBin::Bin/..";
my $src = "$top/ngx_shinsei_module";

open(my $fh, '<', "$top/README.md") or die "README.md: $!";
my %floor;      # file pattern => floor
while (my $line = <$fh>) {
    next unless $line =~ /^\|\s*(\d+)\s*\|\s*`(ngx_shinsei_[\w*]+\.c)`\s*\|/;
    $floor{$2} = $1;
}
close $fh;

cmp_ok(scalar keys %floor, '>=', 20, 'the README gives the floors of the sources');

sub floor_of {
    my ($file) = @_;
    return $floor{$file} if exists $floor{$file};
    for my $pat (keys %floor) {
        (my $re = quotemeta $pat) =~ s/\\\*/\\w+/g;
        return $floor{$pat} if $file =~ /^$re$/;
    }
    return undef;
}

my @files = map { s{.*/}{}r } glob("$src/*.c");

my %defined;    # function => file
my %text;
for my $f (@files) {
    open(my $in, '<', "$src/$f") or die "$f: $!";
    local $/;
    my $text = <$in>;
    close $in;
    # comments and strings say nothing about calls
    $text =~ s{/\*.*?\*/}{}gs;
    $text =~ s{"(?:[^"\\]|\\.)*"}{""}g;
    $text{$f} = $text;
    # a definition: the name at the start of a line, after its return type
    while ($text =~ /^(ngx_shinsei_\w+)\(/mg) {
        $defined{$1} = $f;
    }
}

for my $f (sort @files) {
    my $mine = floor_of($f);
    ok(defined $mine, "$f has a floor in the README") or next;

    my %up;
    while ($text{$f} =~ /\b(ngx_shinsei_\w+)\s*\(/g) {
        my $callee = $defined{$1} or next;
        next if $callee eq $f;
        my $theirs = floor_of($callee);
        next unless defined $theirs;
        $up{"$1 ($callee, floor $theirs)"} = 1 if $theirs > $mine;
    }

    ok(!%up, "$f (floor $mine) calls nothing above it")
        or diag(join "\n", sort keys %up);
}

done_testing;
