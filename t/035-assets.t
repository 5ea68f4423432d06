# Static files under names with a content hash (shinsei_assets and the
# {{@name}} tag).
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path qw(make_path remove_tree);
use ShinseiTest;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $top = $ShinseiTest::TOP;
my $t = ShinseiTest->new(no_start => 1);
my $d = $t->{dir};

sub spew_raw {
    my ($file, $text) = @_;
    open(my $fh, '>:raw', $file) or die "$file: $!";
    print $fh $text;
    close $fh;
}

# --- configuration errors fail nginx -t ----------------------------------

my $tmpl = "$d/tmpl";
my $assets = "$d/assets";

sub check {
    my (%o) = @_;
    remove_tree($tmpl);
    make_path("$tmpl/layouts", "$tmpl/partials");
    for my $name (keys %{ $o{templates} || {} }) {
        open(my $fh, '>:encoding(UTF-8)', "$tmpl/$name") or die $!;
        print $fh $o{templates}{$name};
        close $fh;
    }
    my $http = "    shinsei_templates $tmpl;\n";
    $http .= "    shinsei_assets $o{assets};\n" if $o{assets};
    return $t->nginx_t(
        "load_module $t->{module};\n"
        . "error_log $d/check.log;\n"
        . "events {}\n"
        . "http {\n$http"
        . "    server { listen 127.0.0.1:1;\n"
        . "             location = /_error { shinsei_app error; } }\n"
        . "}\n");
}

remove_tree($assets);
make_path("$assets/css", "$assets/.hidden");
spew_raw("$assets/css/a.css", "a { color: red; }\n");
spew_raw("$assets/.hidden/b.css", "b {}\n");
spew_raw("$assets/README", "no extension\n");

my ($rc, $out) = check(
    templates => { 'page.html' => qq{<link href="{{\@css/a.css}}">\n},
                   'mail.txt' => "{{ \@ css/a.css }}\n" },
    assets => "$assets /static/");
is($rc, 0, 'a template naming a file of shinsei_assets compiles') or diag($out);

($rc, $out) = check(
    templates => { 'page.html' => "<p>\n<link href=\"{{\@css/nope.css}}\">\n" },
    assets => "$assets /static/");
isnt($rc, 0, 'a template naming a file that is not there fails nginx -t');
like($out, qr{template "page\.html" line 2: no static file "css/nope\.css"},
     '... naming the template, the line and the file') or diag($out);

($rc, $out) = check(
    templates => { 'page.html' => "{{\@.hidden/b.css}}" },
    assets => "$assets /static/");
like($out, qr{no static file "\.hidden/b\.css"},
     'hidden directories have no hashed names') or diag($out);

($rc, $out) = check(templates => { 'page.html' => "{{\@README}}" },
                    assets => "$assets /static/");
like($out, qr{no static file "README"},
     'nor files without an extension') or diag($out);

($rc, $out) = check(
    templates => { 'layouts/l.html' => "<x>\n\n{{\@css/a.css}}</x>",
                   'page.html' => "{{< layouts/l}}{{/layouts/l}}" });
isnt($rc, 0, 'the tag without shinsei_assets fails nginx -t');
like($out, qr{template "layouts/l\.html" line 3: the static file "css/a\.css" needs "shinsei_assets" in the http block},
     '... saying what is missing') or diag($out);

($rc, $out) = check(assets => "$assets static");
isnt($rc, 0, 'a URL prefix that is not a path fails nginx -t');
like($out, qr{"shinsei_assets": the URL prefix "static" must be a path},
     '... naming the directive') or diag($out);

($rc, $out) = check(assets => "$d/nonexistent /static/");
like($out, qr{"shinsei_assets": cannot read ".*nonexistent"},
     'a missing directory fails nginx -t, saying so') or diag($out);

# a copy compressed before the file changed would be served under the
# file's new name, and kept a year
spew_raw("$assets/css/a.css.gz", `printf 'a { color: blue; }\n' | gzip -9 -n`);
($rc, $out) = check(assets => "$assets /static/");
isnt($rc, 0, 'a compressed copy of another content fails nginx -t');
like($out, qr{"shinsei_assets": ".*css/a\.css\.gz" is not a compressed copy of ".*css/a\.css" as it is now},
     '... naming the copy and its file') or diag($out);

spew_raw("$assets/css/a.css.gz", substr(`gzip -9 -n < $assets/css/a.css`, 0, 15));
($rc, $out) = check(assets => "$assets /static/");
like($out, qr{".*css/a\.css\.gz" is not a whole gzip file},
     'so does a truncated one') or diag($out);

system("gzip -9 -n -k -f $assets/css/a.css") == 0 or die 'gzip';
($rc, $out) = check(assets => "$assets /static/");
is($rc, 0, 'a fresh compressed copy passes') or diag($out);

spew_raw("$assets/css/a b.css", "x {}\n");
($rc, $out) = check(assets => "$assets /static/");
like($out, qr{"shinsei_assets": the name "css/a b\.css" has characters other than},
     'a file name that would need escaping in a URL fails nginx -t')
    or diag($out);

$t->done;
done_testing;
