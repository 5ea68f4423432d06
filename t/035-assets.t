# Static files under names with a content hash (shinsei_assets and the
# {{@name}} tag), kept a year and sent precompressed; the favicon; a meta
# description on every page.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Path qw(make_path remove_tree);
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $top = $ShinseiTest::TOP;
my $t = ShinseiTest->new(mail => 1);
my $d = $t->{dir};

sub slurp_raw {
    my ($file) = @_;
    open(my $fh, '<:raw', $file) or return undef;
    local $/;
    return <$fh>;
}

sub spew_raw {
    my ($file, $text) = @_;
    open(my $fh, '>:raw', $file) or die "$file: $!";
    print $fh $text;
    close $fh;
}

# what the module must call a file: its name with the first ten hex
# digits of the SHA-256 of its content before the extension
sub hashed {
    my ($root, $name) = @_;
    my $hash = substr(sha256_hex(slurp_raw("$root/$name")), 0, 10);
    (my $url = "/static/$name") =~ s{\.([^./]+)$}{.$hash.$1};
    return $url;
}

my $static = "$top/html/static";
my @linked = qw(css/site.css js/site.js vendor/dads-tokens.css favicon.ico);

# --- the pages link the hashed names ------------------------------------

for my $path ('/', '/procedures/juminhyo', '/login') {
    my $html = $t->get($path)->{text};
    for my $name (@linked) {
        my $url = hashed($static, $name);
        like($html, qr{(?:href|src)="\Q$url\E"},
             "$path links $name by the hash of its content ($url)");
    }
    unlike($html, qr{(?:href|src)="/static/(?:css/site\.css|js/site\.js)"},
           "$path links no plain name");
}

# --- served a year, compressed when asked --------------------------------

my $css = hashed($static, 'css/site.css');
my $r = $t->get($css);
is($r->{status}, 200, 'the hashed name of site.css answers 200');
ok($r->{content} eq slurp_raw("$static/css/site.css"),
   '... with the file');
like($r->{headers}{'content-type'}, qr{^text/css}, '... as text/css');
is($r->{headers}{'cache-control'}, 'public, max-age=31536000, immutable',
   'browsers may keep it a year without asking again');
ok(!$r->{headers}{'content-encoding'},
   'a client that does not ask for gzip gets it uncompressed');
is($r->{headers}{vary}, 'Accept-Encoding', 'and caches are told it varies');

ok(-f "$static/css/site.css.gz", 'build.sh left site.css.gz next to site.css');
$r = $t->browser->get($css, 'accept-encoding' => 'gzip');
is($r->{headers}{'content-encoding'}, 'gzip',
   'a client that asks for gzip gets the precompressed copy');
ok($r->{content} eq slurp_raw("$static/css/site.css.gz"),
   '... as it is on disk');
is($r->{headers}{'cache-control'}, 'public, max-age=31536000, immutable',
   '... kept as long');

my $js = hashed($static, 'js/site.js');
$r = $t->browser->get($js, 'accept-encoding' => 'gzip');
is($r->{status}, 200, 'site.js answers under its hashed name');
is($r->{headers}{'content-encoding'}, 'gzip', '... compressed too');
like($r->{headers}{'content-type'}, qr{javascript}, '... as JavaScript');

(my $missing = $css) =~ s{site\.}{nothing.};
is($t->get($missing)->{status}, 404, 'a hashed name of no file is not found');

$r = $t->get('/static/css/site.css');
is($r->{status}, 200, 'the plain name still answers');
is($r->{headers}{'cache-control'}, 'max-age=3600', '... with a short cache');

$r = $t->browser->get('/', 'accept-encoding' => 'gzip');
ok(!$r->{headers}{'content-encoding'},
   'pages are never compressed, even when asked (BREACH)');

# --- the favicon ----------------------------------------------------------

$r = $t->get('/favicon.ico');
is($r->{status}, 200, '/favicon.ico answers 200');
like($r->{headers}{'content-type'}, qr{^image/}, '... with an image type');
ok($r->{content} eq slurp_raw("$static/favicon.ico"),
   '... the icon of html/static');
is(substr($r->{content}, 0, 4), "\0\0\1\0", '... which is an ICO file');

# --- a meta description on every page -------------------------------------

my $b = signed_up_resident($t, email => 'meta@example.jp',
                           password => 'correct horse battery');

my $summary = $t->psql("SELECT summary FROM procedures "
                       . "WHERE city = 'katsuragi' AND code = 'juminhyo'");
my %special = (
    '/' => qr{^葛城市でオンライン申請できる手続きの一覧です。},
    '/procedures/juminhyo' => qr{^葛城市の住民票の写しをオンラインで請求できます。\Q$summary\E},
    '/login' => qr{ログイン},
    '/signup' => qr{アカウントを登録},
    '/mypage' => qr{登録している氏名},
);
my %descriptions;
for my $page ([ '/', 200 ], [ '/procedures/juminhyo', 200 ],
              [ '/no-such-page', 404 ], [ '/login', 200 ],
              [ '/signup', 200 ], [ '/signup/sent', 200 ],
              [ '/password/forgot', 200 ], [ '/password/forgot/sent', 200 ],
              [ '/goodbye', 200 ],
              [ '/mypage', 200, $b ], [ '/mypage/name', 200, $b ],
              [ '/mypage/email', 200, $b ], [ '/mypage/password', 200, $b ],
              [ '/mypage/delete', 200, $b ]) {
    my ($path, $status, $who) = @$page;
    $r = ($who || $t->browser)->get($path);
    is($r->{status}, $status, "$path answers $status");
    my @meta = $r->{text} =~ m{<meta name="description" content="([^"]*)">}g;
    is(scalar @meta, 1, "$path has one meta description");
    my $text = $meta[0] // '';
    cmp_ok(length $text, '>=', 20, '... of a sentence or two');
    like($text, $special{$path} // qr{。$}, '... saying what the page is');
    $descriptions{$text}++;
}
like($t->get('/no-such-page')->{text},
     qr{<meta name="description" content="葛城市のオンライン申請サービスです。},
     'a page without its own has the default, naming the city');
ok(keys %descriptions >= 10, 'the pages have descriptions of their own');

$t->done;

# --- the hash follows the content -----------------------------------------

# a copy of html/static that the test may change, served by a new nginx
my $root = "$d/html";
make_path($root);
system('cp', '-a', $static, "$root/") == 0 or die 'cp';

my $t2 = ShinseiTest->new(static_root => $root);
my $before = hashed("$root/static", 'css/site.css');
like($t2->get('/')->{text}, qr{\Q$before\E},
     'a copy of the static files: the page links its site.css');

spew_raw("$root/static/css/site.css",
         slurp_raw("$root/static/css/site.css") . "\n.changed { color: #000; }\n");
system('gzip', '-9', '-n', '-k', '-f', "$root/static/css/site.css") == 0
    or die 'gzip';
my $after = hashed("$root/static", 'css/site.css');
isnt($after, $before, 'a changed file has another hash');

$t2->reload;
$r = $t2->get_until('/', qr{\Q$after\E});
like($r->{text}, qr{\Q$after\E}, 'after a reload the page links the new name');
unlike($r->{text}, qr{\Q$before\E}, '... and not the old one');
$r = $t2->browser->get($after, 'accept-encoding' => 'gzip');
is($r->{status}, 200, 'the new name answers');
is($r->{content}, slurp_raw("$root/static/css/site.css.gz"),
   '... with the new compressed copy');

$t2->done;

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

done_testing;
