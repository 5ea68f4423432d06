# Templates: compiled at configuration load, errors fail "nginx -t" naming
# file and line, every value HTML-escaped.
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

my $t = ShinseiTest->new;

# --- escaping, end to end -------------------------------------------------

$t->psql(<<'SQL');
UPDATE procedures SET name = '<script>alert("x")</script>&''',
                      summary = '<img src=x onerror=alert(1)>'
WHERE city = 'katsuragi' AND code = 'fuhyo';
SQL
my $html = $t->get('/')->{text};
unlike($html, qr{<script>alert}, 'a name with markup is not output as markup');
like($html, qr{&lt;script&gt;alert\(&quot;x&quot;\)&lt;/script&gt;&amp;&#39;},
     'it is escaped: < > " & \' all become entities');
like($html, qr{&lt;img src=x onerror=alert\(1\)&gt;}, 'in every field');
$html = $t->get('/procedures/fuhyo')->{text};
like($html, qr{<title>&lt;script&gt;}, 'in the title as well');

$t->done;

# --- compile errors fail nginx -t -----------------------------------------

my $dir = "$t->{dir}/tmpl";

sub write_templates {
    my (%files) = @_;
    remove_tree($dir);
    make_path("$dir/layouts", "$dir/partials");
    for my $name (keys %files) {
        open(my $fh, '>:encoding(UTF-8)', "$dir/$name") or die $!;
        print $fh $files{$name};
        close $fh;
    }
}

sub check {
    my ($templates) = @_;
    $templates //= $dir;
    return $t->nginx_t(
        "load_module $t->{module};\n"
        . "error_log $t->{dir}/check.log;\n"
        . "events {}\n"
        . "http {\n"
        . "    shinsei_templates $templates;\n"
        . "    server { listen 127.0.0.1:1;\n"
        . "             location = /_error { shinsei_app error; } }\n"
        . "}\n");
}

my %cases = (
    'an unclosed section' => [
        { 'page.html' => "<p>\n{{#items}}\n<li>{{name}}</li>\n" },
        qr{template "page\.html" line 2: section "items" is not closed} ],
    'a section closed by another name' => [
        { 'page.html' => "{{#a}}\n{{/b}}\n" },
        qr{template "page\.html" line 2: "b" closes another section} ],
    'a close without an open' => [
        { 'page.html' => "x\ny\n{{/a}}" },
        qr{template "page\.html" line 3: "a" closes nothing} ],
    'an unknown partial' => [
        { 'page.html' => "{{> partials/nope}}" },
        qr{template "page\.html" line 1: no partial "partials/nope"} ],
    'an unknown layout' => [
        { 'page.html' => "\n{{< layouts/nope}}{{/layouts/nope}}" },
        qr{template "page\.html" line 2: no layout "layouts/nope"} ],
    'triple mustaches' => [
        { 'page.html' => "{{{x}}}" },
        qr{triple mustaches are not supported} ],
    'unescaped output of a value not named *_html' => [
        { 'page.html' => "a\n{{& name}}" },
        qr{line 2: unescaped output "name" must be named \*_html} ],
    'a tag left open' => [
        { 'page.html' => "{{name" },
        qr{line 1: tag is not closed} ],
    'an error inside a partial names the partial' => [
        { 'page.html' => "{{> partials/p}}",
          'partials/p.html' => "\n\n{{#x}}" },
        qr{template "partials/p\.html" line 3: section "x" is not closed} ],
    'partials including themselves' => [
        { 'page.html' => "{{> partials/p}}",
          'partials/p.html' => "{{> partials/p}}" },
        qr{nested too deep} ],
    'set delimiters, which are not supported' => [
        { 'page.html' => "{{=<% %>=}}" },
        qr{unsupported tag} ],
    'a tag name with odd characters' => [
        { 'page.html' => "{{a b}}" },
        qr{bad tag name "a b"} ],
);

for my $what (sort keys %cases) {
    my ($files, $re) = @{ $cases{$what} };
    write_templates(%$files);
    my ($rc, $out) = check();
    isnt($rc, 0, "$what fails nginx -t");
    like($out, $re, '... naming file and line') or diag($out);
}

write_templates(
    'page.html' => "{{< layouts/l}}{{\$body}}B{{/body}}{{/layouts/l}}",
    'layouts/l.html' => "<x>{{\$body}}default{{/body}}</x>");
my ($rc, $out) = check();
is($rc, 0, 'a page with a layout compiles') or diag($out);

($rc, $out) = check("$t->{dir}/nonexistent");
isnt($rc, 0, 'a missing templates directory fails nginx -t');
like($out, qr{cannot read templates from}, '... saying so');

done_testing;
