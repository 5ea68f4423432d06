# Personal data at rest and in logs (REQ N-SEC-3, N-PRIV-1): the database
# holds no readable name or address, the logs none either; keys rotate.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Encode qw(decode);
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new(mail => 1);

my %secret = (
    name     => '秘密 花子',
    kana     => 'ヒミツ ハナコ',
    email    => 'himitsu.hanako@example.jp',
    password => 'a very private passphrase',
);

my $b = signed_up_resident($t, email => $secret{email}, name => $secret{name},
                           name_kana => $secret{kana}, password => $secret{password});
$b->get('/password/forgot');
$b->submit_form('/password/forgot', { email => $secret{email} });
my $reset = mail_for($t, $secret{email}, qr/パスワードの再発行/);
my ($token) = link_path($reset, qr{t=}) =~ /t=(.*)/;
$t->browser->get(link_path($reset, qr{t=}));
log_in($t, $t->browser, $secret{email}, 'a wrong password');

sub dump_db {
    my $out = `pg_dump -h $t->{pg_dir} -p $t->{pg_port} -U postgres --data-only $t->{dbname} 2>&1`;
    return decode('UTF-8', $out);
}

my $dump = dump_db();
like($dump, qr/COPY public\.citizens/, 'pg_dump shows the tables');
like($dump, qr/COPY public\.outbox/, 'the outbox included');
for my $what (sort keys %secret) {
    unlike($dump, qr/\Q$secret{$what}\E/i, "the database holds no readable $what");
}
unlike($dump, qr/himitsu/i, 'not even part of the address');
unlike($dump, qr/\Q$token\E/, 'nor the reset token (only its hash)');
like($dump, qr/\tk1:[A-Za-z0-9+\/]+=*\t/, 'names and addresses are stored encrypted under key k1');
like($dump, qr/\$scrypt\$ln=\d+,r=\d+,p=\d+\$/, 'passwords as scrypt hashes');

my $logs = decode('UTF-8', $t->error_log . $t->slurp("$t->{dir}/access.log"));
for my $what (qw(name kana email password)) {
    unlike($logs, qr/\Q$secret{$what}\E/i, "the logs hold no $what");
}
unlike($logs, qr/\Q$token\E/,
       'nor a token from a mail link (the access log leaves query strings out)');

# --- keys ---------------------------------------------------------------

# a new key appended: new data uses it, old data stays readable (whether
# read under k1 or already re-encrypted under k2: t/165 covers that)
open(my $fh, '>>', "$t->{dir}/data.keys") or die $!;
print $fh 'key k2 ' . ('5a' x 32) . "\n";
close $fh;
$t->stop;
$t->start;

my $r;
my $again = $t->browser;
$r = log_in($t, $again, $secret{email}, $secret{password});
is($r->{status}, 303, 'after adding a key, the account written under the old one logs in');
like($again->get('/mypage')->{text}, qr{<dd>\Q$secret{name}\E</dd>}, 'its name decrypts');
$again->get('/mypage/name');
$again->submit_form('/mypage/name', { name => '秘密 花子二', name_kana => $secret{kana} });
like($t->psql("SELECT name_enc FROM citizens"), qr/^k2:/, 'new data is written with the newest key');
like($again->get('/mypage')->{text}, qr{<dd>秘密 花子二</dd>}, 'and read back');

# without the right keys nothing is readable
open($fh, '>', "$t->{dir}/data.keys") or die $!;
print $fh 'index ' . ('11' x 32) . "\nkey k3 " . ('22' x 32) . "\n";
close $fh;
$t->stop;
$t->start;
$r = log_in($t, $t->browser, $secret{email}, $secret{password});
is($r->{status}, 422, 'with other keys the account is not even found (the blind index is keyed)');
like($t->error_log, qr/shinsei: /, 'the module ran') ;
unlike(decode('UTF-8', $t->error_log), qr/11111111|22222222|5a5a5a5a/, 'keys never appear in the log');

$t->done;
done_testing;
