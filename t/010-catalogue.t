# The catalogue of online procedures and the page of each procedure.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use ShinseiTest;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new(tenants => ['katsuragi', 'sample']);

my %fees = (
    '住民票の写し' => '300円', '戸籍謄本・抄本' => '450円',
    '除籍謄本・抄本' => '750円', '戸籍の附票の写し' => '300円',
    '独身証明・身分証明' => '300円', '課税（非課税）証明書' => '300円',
    '納税証明書' => '300円', '固定資産評価証明書' => '300円',
    '公課証明書' => '300円', '名寄帳兼課税台帳' => '300円',
);

my $r = $t->get('/');
is($r->{status}, 200, 'the catalogue answers 200');
like($r->{headers}{'content-type'}, qr{^text/html; charset=utf-8}i,
     'as UTF-8 HTML');
my $html = $r->{text};

like($html, qr{<html lang="ja">}, 'the page is in Japanese (lang="ja")');
like($html, qr{<span class="site-header__city">葛城市</span>},
     'the header carries the city name');
like($html, qr{<a class="skip-link" href="#main">}, 'a skip link leads to the main content');
like($html, qr{<main id="main"}, 'the content is in the main landmark');
like($html, qr{0745-48-2811}, 'the footer gives the city contact');

my ($koseki) = $html =~ m{<h2 id="group-koseki-jumin">戸籍・住民票関係</h2>(.*?)</section>}s;
my ($zei) = $html =~ m{<h2 id="group-zei">税関係</h2>(.*?)</section>}s;
ok($koseki && $zei, 'procedures are grouped as 戸籍・住民票関係 and 税関係');
like($koseki, qr{住民票の写し.*戸籍謄本・抄本.*除籍謄本・抄本.*戸籍の附票の写し.*独身証明・身分証明}s,
     'the family register group holds its five certificates in order');
like($zei, qr{課税（非課税）証明書.*納税証明書.*固定資産評価証明書.*公課証明書.*名寄帳兼課税台帳}s,
     'the tax group holds its five certificates in order');

my @cards = $html =~ m{<li class="procedure-card">(.*?)</li>}gs;
is(scalar @cards, 10, 'the ten procedures of the specification are listed');
for my $card (@cards) {
    my ($name) = $card =~ m{>([^<]+)</a>};
    my ($fee) = $card =~ m{手数料 1通 ([^<]+)</p>};
    is($fee, $fees{$name}, "$name shows its fee per copy ($fees{$name})");
}

# one procedure
$r = $t->get('/procedures/koseki');
is($r->{status}, 200, '/procedures/koseki answers 200');
$html = $r->{text};
like($html, qr{<h1>戸籍謄本・抄本</h1>}, 'the procedure page names it');
like($html, qr{<h2 id="who">申請できる方</h2>\s*<p>戸籍に記載されているご本人}s,
     'it says who may request it');
like($html, qr{戸籍謄本（全部事項証明書）</th><td>450円}, 'it lists each fee item with its amount');
like($html, qr{戸籍抄本（個人事項証明書）</th><td>450円}, 'both kinds of copy');
like($html, qr{郵送料（定形郵便） 110円}, 'postage is shown as a separate item');
like($html, qr{マイナンバーカード.*スマートフォン.*クレジットカード}s,
     'it says what is needed: My Number Card, smartphone, credit card');
unlike($html, qr{申請する</}, 'no start button until the application flow exists');
like($html, qr{<title>戸籍謄本・抄本 \| 葛城市 オンライン申請</title>}, 'the title names page and city');

for my $code (qw(juminhyo joseki fuhyo mibun kazei nozei hyoka koka nayose)) {
    is($t->get("/procedures/$code")->{status}, 200, "/procedures/$code exists");
}

$r = $t->get('/procedures/nonexistent');
is($r->{status}, 404, 'an unknown procedure is 404');
like($r->{text}, qr{<h1>ページが見つかりません</h1>}, 'with the Japanese error page');
like($r->{text}, qr{site-header__city">葛城市<}, 'in the site layout');

is($t->get('/procedures/%E4%BD%8F%E6%B0%91')->{status}, 404,
   'a code outside a-z, 0-9 is 404 without reaching the database');

$r = $t->browser->head('/procedures/koseki');
is($r->{status}, 200, 'HEAD answers 200');
is($r->{content} // '', '', 'without a body');

# --- the workers' copy of the pages' data (N-PERF-1) ----------------------

# queries made by the worker, as /healthz counts them.  The worker's own
# jobs (the re-encryption pass 10 s after start, the purge) query too, so
# each figure is the least of three tries: a job's few queries cannot land
# in all three, while a page that queries would show in every one.
sub queries { $t->json($t->get('/healthz')->{content})->{counters}{queries} }

sub least_queries {
    my ($what) = @_;
    my $least;
    for (1 .. 3) {
        my $q0 = queries();
        $what->();
        my $n = queries() - $q0;
        $least = $n if !defined $least || $n < $least;
    }
    return $least;
}

my $per_healthz = least_queries(sub {});

# the queries of 3 catalogue pages, beyond those of /healthz
sub catalogue_queries {
    return least_queries(sub { $t->get('/') for 1 .. 3 }) - $per_healthz;
}

# both pages once more: the first requests above may have come before the
# worker's LISTEN connection was up, when nothing is kept
is($t->get('/procedures/juminhyo')->{status}, 200, 'a procedure page');
$t->get('/');
is(least_queries(sub {
       $t->get('/') for 1 .. 3;
       $t->get('/procedures/juminhyo') for 1 .. 3;
   }) - $per_healthz, 0,
   'pages seen before are answered without a database query');

# fees are data: a change reaches every worker by NOTIFY (sql/007)
$t->psql("UPDATE fee_items SET amount = 350 WHERE city = 'katsuragi' "
         . "AND label = '住民票の写し'");
like($t->get_until('/', qr{手数料 1通 350円})->{text},
     qr{住民票の写し</a>.*?手数料 1通 350円}s,
     'a fee changed in the database shows at once (fees are data, not code)');
like($t->get_until('/procedures/juminhyo', qr{350円})->{text},
     qr{<td[^>]*>350円</td>}, 'on the procedure page too');
$t->psql("UPDATE fee_items SET amount = 300 WHERE label = '住民票の写し'");
like($t->get_until('/', qr{手数料 1通 300円})->{text},
     qr{住民票の写し</a>.*?手数料 1通 300円}s, 'and back');

$t->psql("UPDATE procedures SET published = false WHERE city = 'katsuragi' AND code = 'koka'");
unlike($t->get_until('/', qr{公課証明書}, unlike => 1)->{text}, qr{公課証明書},
       'an unpublished procedure leaves the catalogue');
is($t->get('/procedures/koka')->{status}, 404, 'and its page');
$t->psql("UPDATE procedures SET published = true WHERE code = 'koka'");
like($t->get_until('/', qr{公課証明書})->{text}, qr{公課証明書},
     'published again, it is back');

# a change that nobody notifies (catalogue_docs written directly, which
# no trigger watches) is not seen: the pages come from the copy
$t->psql("UPDATE catalogue_docs SET doc = replace(doc::text, '住民票の写し',"
         . " '住民票の写し（未通知）')::json WHERE city = 'katsuragi'");
my @seen = map { $t->get('/')->{text} =~ /未通知/ ? 1 : 0 } 1 .. 3;
is_deeply(\@seen, [0, 0, 0],
          'a change without a notification is not seen (pages are kept)');

# the LISTEN connection lost: notifications may be lost with it, so the
# copy is not used while it is down and is emptied when it is back
is($t->psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            . " WHERE query LIKE 'LISTEN %' AND datname = current_database()",
            user => 'postgres'),
   1, 'the LISTEN connection is cut');
$t->psql("UPDATE fee_items SET amount = 360 WHERE label = '住民票の写し'");
like($t->get_until('/', qr{手数料 1通 360円})->{text},
     qr{住民票の写し</a>.*?手数料 1通 360円}s,
     'a change made while it was down shows');

# once it is back (it reconnects by itself), pages are kept again
my ($kept, $back) = (0, time + 10);
while (!$kept && time < $back) {
    $t->get('/');
    $kept = catalogue_queries() == 0;
    sleep 0.2 unless $kept;
}
ok($kept, 'the LISTEN connection is back and the pages are kept again');

# rebuilt by the trigger (and notified) the document lost the mark above;
# write it again unnotified, cut the connection, and once it is back the
# page must show it: the copy kept before the cut was emptied
$t->psql("UPDATE catalogue_docs SET doc = replace(doc::text, '住民票の写し',"
         . " '住民票の写し（未通知）')::json WHERE city = 'katsuragi'");
unlike($t->get('/')->{text}, qr{未通知}, 'again unnotified, not seen');
$t->psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
         . " WHERE query LIKE 'LISTEN %' AND datname = current_database()",
         user => 'postgres');
($kept, $back) = (0, time + 10);
while (!$kept && time < $back) {
    sleep 0.2;
    $t->get('/');
    $kept = catalogue_queries() == 0;
}
ok($kept, 'the connection is back again');
like($t->get('/')->{text}, qr{住民票の写し（未通知）},
     'the copy from before the cut is gone: the page shows the database');

$t->psql("UPDATE fee_items SET amount = 300 WHERE label = '住民票の写し'");
my $now = $t->get_until('/', qr{手数料 1通 300円})->{text};
like($now, qr{住民票の写し</a>.*?手数料 1通 300円}s,
     'and a change reaches them by NOTIFY');
unlike($now, qr{未通知}, '(the trigger rebuilt the whole document)');

# a second city on the same nginx: its own server {}, its own catalogue
$t->psql(<<'SQL');
INSERT INTO cities (code, name, contact) VALUES ('sample', '見本町', '{"office":"見本町役場","phone":"0000-00-0000"}');
INSERT INTO procedure_groups (city, code, name, sort) VALUES ('sample', 'koseki-jumin', '住民票', 1);
INSERT INTO procedures (city, code, group_code, name, summary, published)
  VALUES ('sample', 'juminhyo', 'koseki-jumin', '住民票の写し（見本町）', '見本', true);
INSERT INTO fee_items (city, procedure_id, kind, label, amount)
  SELECT city, id, 'fee', '住民票', 200 FROM procedures WHERE city = 'sample';
SQL
my $other = $t->get('/', port => $t->{ports}[1])->{text};
like($other, qr{site-header__city">見本町<}, 'the second server shows its own city');
like($other, qr{住民票の写し（見本町）.*?手数料 1通 200円}s, 'and its own procedures and fees');
unlike($other, qr{戸籍謄本}, 'and none of the first city');
unlike($t->get('/')->{text}, qr{見本町}, 'the first city shows nothing of the second');
is($t->get('/procedures/koseki', port => $t->{ports}[1])->{status}, 404,
   'a procedure of another city is not found');

# security headers on every page
$r = $t->get('/');
like($r->{headers}{'content-security-policy'}, qr{script-src 'self';}, 'CSP without inline script');
like($r->{headers}{'content-security-policy'}, qr{frame-ancestors 'none'}, 'CSP frame-ancestors none');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'X-Content-Type-Options');
is($r->{headers}{'referrer-policy'}, 'same-origin', 'Referrer-Policy');
ok(!$r->{headers}{'strict-transport-security'}, 'no HSTS on plain http');
ok(!$r->{headers}{'set-cookie'}, 'an anonymous visit to the catalogue sets no cookie');
unlike($r->{text}, qr{<script>|style="}, 'no inline script or style');

$r = $t->get('/static/css/site.css');
is($r->{status}, 200, 'the stylesheet is served by nginx from html/static');

$t->done;
done_testing;
