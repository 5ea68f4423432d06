# The directives: bad values fail "nginx -t" with a message naming the
# directive; the example configuration in conf/ is valid.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Path qw(make_path);
use ShinseiTest;

my $t = ShinseiTest->new(no_start => 1);
my $top = $ShinseiTest::TOP;
my $d = $t->{dir};

my $mail = "shinsei_data_keys $d/data.keys;\n"
         . "shinsei_smtp smtp://127.0.0.1:25;\n";
my $assets = "shinsei_assets $top/html/static /static/;\n";
my $site = "shinsei_site_url https://example.jp; "
         . "shinsei_mail_from noreply\@example.jp;";

sub conf {
    my (%o) = @_;
    my $http = $o{http} // qq{shinsei_db "host=/tmp dbname=x";\n}
                         . "shinsei_templates $top/html/templates;";
    $http = "$mail$http" unless $o{no_mail};
    $http = "$assets$http";
    my $server = ($o{server} // 'shinsei_tenant katsuragi;')
               . ($o{no_site} ? '' : $site);
    my $location = $o{location} // 'shinsei_app citizen;';
    return "load_module $t->{module};\n"
         . "error_log $d/check.log;\n"
         . "events {}\n"
         . "http {\n$http\n"
         . "  server { listen 127.0.0.1:1; $server\n"
         . "    location / { $location }\n"
         . "  }\n"
         . "}\n";
}

open(my $bk, '>', "$d/bad.keys") or die $!;
print $bk "index " . ('ab' x 32) . "\nkey k1 abcdef\n";
close $bk;
open($bk, '>', "$d/dup.keys") or die $!;
print $bk "index " . ('ab' x 32) . "\nkey k1 " . ('01' x 32)
        . "\nkey k1 " . ('02' x 32) . "\n";
close $bk;
open($bk, '>', "$d/dup-index.keys") or die $!;
print $bk "index " . ('ab' x 32) . "\nindex " . ('cd' x 32)
        . "\nkey k1 " . ('01' x 32) . "\n";
close $bk;
for my $bad (['dot', 'k1.v1'], ['long', 'k' x 17], ['colon', 'k:1']) {
    open($bk, '>', "$d/id-$bad->[0].keys") or die $!;
    print $bk "index " . ('ab' x 32) . "\nkey $bad->[1] " . ('01' x 32) . "\n";
    close $bk;
}
open($bk, '>', "$d/smtp.auth") or die $!;
print $bk "user:secret\n";
close $bk;
open($bk, '>', "$d/open.keys") or die $!;
print $bk "index " . ('ab' x 32) . "\nkey k1 " . ('01' x 32) . "\n";
close $bk;
# secrets are root's alone (the harness writes data.keys so too)
chmod 0600, map { "$d/$_" } qw(bad.keys dup.keys dup-index.keys smtp.auth
                                 id-dot.keys id-long.keys id-colon.keys);
chmod 0644, "$d/open.keys";

my ($rc, $out) = $t->nginx_t(conf());
is($rc, 0, 'a complete configuration passes nginx -t') or diag($out);

($rc, $out) = $t->nginx_t(conf(http => qq{shinsei_db "host=db1.example.jp,db2.example.jp hostaddr=10.0.0.1,10.0.0.2 port=5432 target_session_attrs=read-write dbname=x";\nshinsei_templates $top/html/templates;}));
is($rc, 0, 'host names with their addresses (hostaddr) pass') or diag($out);

my @bad = (
    [ 'a connection string libpq cannot parse',
      { http => qq{shinsei_db "host=/tmp bogus"; shinsei_templates $top/html/templates;} },
      qr{"shinsei_db": invalid connection string} ],
    [ 'a pool of 0',
      { http => qq{shinsei_db "host=/tmp" pool=0; shinsei_templates $top/html/templates;} },
      qr{"shinsei_db": invalid parameter "pool=0"} ],
    [ 'a timeout that is not a time',
      { http => qq{shinsei_db "host=/tmp" query_timeout=soon; shinsei_templates $top/html/templates;} },
      qr{"shinsei_db": invalid parameter "query_timeout=soon"} ],
    [ 'an unknown shinsei_db parameter',
      { http => qq{shinsei_db "host=/tmp" size=3; shinsei_templates $top/html/templates;} },
      qr{"shinsei_db": invalid parameter "size=3"} ],
    [ 'a city code with capitals and spaces',
      { server => 'shinsei_tenant "Katsura gi";' },
      qr{"shinsei_tenant": "Katsura gi" is not a city code} ],
    [ 'an unknown application',
      { location => 'shinsei_app shop;' },
      qr{"shinsei_app": unknown application "shop"} ],
    [ 'shinsei_app without shinsei_db',
      { http => "shinsei_templates $top/html/templates;" },
      qr{"shinsei_app" needs "shinsei_db"} ],
    [ 'shinsei_app without shinsei_tenant',
      { server => '' },
      qr{"shinsei_app" needs "shinsei_tenant"} ],
    [ 'shinsei_app without shinsei_templates',
      { http => qq{shinsei_db "host=/tmp";} },
      qr{"shinsei_app" needs "shinsei_templates"} ],
    [ 'a body limit above the body buffer',
      { location => 'shinsei_app citizen; shinsei_body_limit 1m; client_body_buffer_size 16k;' },
      qr{"shinsei_body_limit" \(1048576\) is larger than "client_body_buffer_size" \(16384\)} ],
    [ 'an absolute session time below the idle one',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates;
                   shinsei_session_timeout 1h 10m;} },
      qr{"shinsei_session_timeout" takes an idle and an absolute time} ],
    [ 'a citizen site without data keys',
      { no_mail => 1 },
      qr{"shinsei_app" needs "shinsei_data_keys"} ],
    [ 'a citizen site without its URL and sender',
      { no_site => 1 },
      qr{"shinsei_app" needs "shinsei_site_url" and "shinsei_mail_from"} ],
    [ 'a key file with a short key',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_data_keys $d/bad.keys;} , no_mail => 1 },
      qr{"shinsei_data_keys": line 2 of ".*bad\.keys" is not} ],
    [ 'a key file that group or others may read (REQ N-SEC-1)',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_data_keys $d/open.keys;} , no_mail => 1 },
      qr{"shinsei_data_keys": ".*open\.keys" holds secrets but group or others may read it \(mode 0644\)} ],
    [ 'a missing key file',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_data_keys $d/none.keys;}, no_mail => 1 },
      qr{"shinsei_data_keys": cannot open} ],
    [ 'an smtp URL of another scheme',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_data_keys $d/data.keys; shinsei_smtp http://x;}, no_mail => 1 },
      qr{"shinsei_smtp": "http://x" is not an smtp:// or smtps:// URL} ],
    [ 'an scrypt cost out of range',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_password_kdf ln=30 r=8 p=1;} },
      qr{"shinsei_password_kdf": invalid parameter "ln=30"} ],
    [ 'an scrypt cost that would take 512 MiB per hash (REQ N-SEC-1)',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_password_kdf ln=20 r=32 p=1;} },
      qr{"shinsei_password_kdf" directive asks for more than 256 MiB} ],
    (map {
        [ "finding 10: a key id $_->[1] (only 1 to 16 of A-Z a-z 0-9 - _)",
          { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_data_keys $d/id-$_->[0].keys;} , no_mail => 1 },
          qr{"shinsei_data_keys": line 2 of ".*id-$_->[0]\.keys" is not} ]
      } ['dot', 'with a dot (".v1" marks the first format)'],
        ['long', 'of 17 characters'], ['colon', 'with a colon']),
    [ 'a key id given twice (which one decrypts old data?)',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_data_keys $d/dup.keys;} , no_mail => 1 },
      qr{"shinsei_data_keys": line 3 of ".*dup\.keys" repeats the key id "k1"} ],
    [ 'two index keys (which would the look-ups use?)',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_data_keys $d/dup-index.keys;} , no_mail => 1 },
      qr{"shinsei_data_keys": line 2 of ".*dup-index\.keys" repeats the "index" line} ],
    [ 'SMTP credentials without TLS (the password in clear)',
      { http => qq{shinsei_db "host=/tmp"; shinsei_templates $top/html/templates; shinsei_data_keys $d/data.keys; shinsei_smtp smtp://127.0.0.1:25 auth_file=$d/smtp.auth;}, no_mail => 1 },
      qr{"shinsei_smtp": auth_file needs TLS} ],
    [ 'a site URL that is not http(s)',
      { server => 'shinsei_tenant katsuragi; shinsei_site_url ftp://x; shinsei_mail_from a@b.jp;', no_site => 1 },
      qr{"shinsei_site_url": "ftp://x" is not an http:// or https:// URL} ],
    [ 'a sender address with a line break',
      { server => qq{shinsei_tenant katsuragi; shinsei_site_url https://x.jp; shinsei_mail_from "a\@b.jp\nBcc: x\@y.jp";}, no_site => 1 },
      qr{"shinsei_mail_from": .* is not an address}s ],
    [ 'a database host name (resolved with a blocking lookup)',
      { http => qq{shinsei_db "host=db.example.jp dbname=x"; shinsei_templates $top/html/templates;} },
      qr{"shinsei_db": host "db\.example\.jp" is a name that libpq would resolve with a blocking lookup} ],
    [ 'localhost as the database host',
      { http => qq{shinsei_db "host=localhost,10.0.0.2 dbname=x"; shinsei_templates $top/html/templates;} },
      qr{host "localhost" is a name} ],
    [ 'host and port lists of different lengths',
      { http => qq{shinsei_db "host=10.0.0.1,10.0.0.2 port=5432,5433,5434"; shinsei_templates $top/html/templates;} },
      qr{host, hostaddr and port lists differ in length} ],
    [ 'shinsei_db given twice',
      { http => qq{shinsei_db "host=/tmp"; shinsei_db "host=/tmp"; shinsei_templates $top/html/templates;} },
      qr{"shinsei_db" directive is duplicate} ],
);

for my $case (@bad) {
    my ($what, $o, $re) = @$case;
    ($rc, $out) = $t->nginx_t(conf(%$o));
    isnt($rc, 0, "$what fails nginx -t");
    like($out, $re, '... with a message naming the directive') or diag($out);
}

# the example configuration, with its paths pointed at this checkout
make_path("$d/etc/tls", "$d/log");
system("cp $d/data.keys $d/etc/data.keys") == 0 or die;
system("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test "
       . "-keyout $d/etc/tls/katsuragi.key -out $d/etc/tls/katsuragi.crt "
       . ">/dev/null 2>&1") == 0 or die 'openssl';
for my $file ('nginx.conf', 'citizen-katsuragi.conf') {
    open(my $in, '<', "$top/conf/$file") or die $!;
    local $/;
    my $text = <$in>;
    $text =~ s{/usr/lib/nginx/modules/ngx_shinsei_module\.so}{$t->{module}}g;
    $text =~ s{/usr/share/ngx-shinsei/html}{$top/html}g;
    $text =~ s{/usr/share/ngx-shinsei/conf}{$top/conf}g;
    $text =~ s{/etc/ngx-shinsei/tls}{$d/etc/tls}g;
    $text =~ s{/etc/ngx-shinsei/}{$d/etc/}g;
    $text =~ s{/var/log/nginx/}{$d/log/}g;
    $text =~ s{/run/nginx\.pid}{$d/nginx.pid}g;
    $text =~ s{^user www-data;}{}m;
    $text =~ s{include /etc/nginx/mime\.types;}{include /etc/nginx/mime.types;};
    open(my $outf, '>', "$d/etc/$file") or die $!;
    print $outf $text;
    close $outf;
}
($rc, $out) = $t->nginx_run('-t', '-p', "$d/", '-c', "$d/etc/nginx.conf");
is($rc, 0, 'the example configuration in conf/ passes nginx -t')
    or diag($out);

$t->done;
done_testing;
