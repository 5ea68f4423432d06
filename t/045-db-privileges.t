# Least privilege in the database (REQ N-PRIV-1, N-SEC-1; sql/014): the
# module connects as "shinsei", a member of shinsei_runtime, which owns
# nothing and holds only the grants the module needs, table by table.
# One stolen connection string cannot change the schema, empty a table,
# or write what the module only reads.
use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use ShinseiTest;
use ShinseiTest::Flows;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = ShinseiTest->new(mail => 1);

# the module works as that role: a resident signs up, verifies, logs in
my $b = signed_up_resident($t, email => 'kenri@example.jp');
like($b->get('/mypage')->{text}, qr{kenri\@example\.jp},
     'the module signs up, verifies and logs in a resident as its role');
is($t->get('/procedures/koseki')->{status}, 200, 'and shows the catalogue');

is($t->psql("SELECT DISTINCT usename FROM pg_stat_activity"
            . " WHERE application_name = 'ngx_shinsei'"
            . " AND datname = current_database()"), 'shinsei',
   'its connections log in as shinsei');
is($t->psql("SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls"
            . " FROM pg_roles WHERE rolname = 'shinsei'"), 'f',
   'a role with no attribute beyond LOGIN');
is($t->psql("SELECT count(*) FROM pg_class c JOIN pg_namespace n"
            . " ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
            . " AND pg_has_role('shinsei', c.relowner, 'MEMBER')"), 0,
   'which owns no table, sequence or index, nor is a member of their owner');
is($t->psql("SELECT pg_get_userbyid(datdba) FROM pg_database"
            . " WHERE datname = current_database()"), 'shinsei_owner',
   'the database belongs to shinsei_owner, which ran the migrations');
is($t->psql("SELECT count(*) FROM schema_migrations"),
   scalar(() = glob("$FindBin::Bin/../sql/[0-9][0-9][0-9]_*.sql")),
   '... every one of them');

# refused(SQL): the error psql gives running SQL as the module's role, or
# undef if it ran
sub refused {
    my ($sql) = @_;
    return eval { $t->psql($sql, user => 'shinsei'); 1 } ? undef : $@;
}

my @refused = (
    # the schema
    [ 'CREATE TABLE stolen (x text)', qr/permission denied for schema public/,
      'DDL: CREATE TABLE' ],
    [ 'ALTER TABLE citizens ADD COLUMN x text', qr/must be owner of table citizens/,
      'DDL: ALTER TABLE' ],
    [ 'DROP TABLE sessions', qr/must be owner of table sessions/,
      'DDL: DROP TABLE' ],
    [ 'CREATE INDEX ON outbox (subject)', qr/must be owner of table outbox/,
      'DDL: CREATE INDEX' ],
    [ 'ALTER TABLE outbox DISABLE TRIGGER outbox_first_format',
      qr/must be owner of table outbox/, 'DDL: disabling a trigger' ],
    [ 'DROP FUNCTION enqueue_mail(text, text, jsonb)',
      qr/must be owner of function enqueue_mail/, 'DDL: DROP FUNCTION' ],
    [ 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
      qr/permission denied for schema public/, 'DDL: CREATE FUNCTION' ],
    [ 'CREATE OR REPLACE FUNCTION session_link(text, bytea, text)'
      . ' RETURNS bytea LANGUAGE sql AS $$ SELECT NULL::bytea $$',
      qr/must be owner of function session_link|permission denied for schema public/,
      'DDL: replacing a function' ],
    [ 'CREATE SCHEMA stolen', qr/permission denied for database/,
      'DDL: CREATE SCHEMA' ],
    # emptying tables
    (map { [ "TRUNCATE $_", qr/permission denied for table $_/, "TRUNCATE $_" ] }
         qw(citizens sessions tokens outbox login_failures cities procedures)),
    # tables it only reads, or never touches
    [ "UPDATE cities SET name = 'x'", qr/permission denied for table cities/,
      'writing the cities it only reads' ],
    [ "UPDATE procedures SET name = 'x'",
      qr/permission denied for table procedures/,
      'writing the procedures it only reads' ],
    [ 'DELETE FROM fee_items', qr/permission denied for table fee_items/,
      'deleting fees it only reads' ],
    [ "INSERT INTO catalogue_docs SELECT * FROM catalogue_docs LIMIT 0",
      qr/permission denied for table catalogue_docs/,
      'inserting into the catalogue pages it only reads' ],
    [ 'SELECT * FROM schema_migrations',
      qr/permission denied for table schema_migrations/,
      'reading schema_migrations' ],
    [ 'DELETE FROM schema_migrations',
      qr/permission denied for table schema_migrations/,
      'deleting from schema_migrations' ],
    [ 'UPDATE login_failures SET at = now()',
      qr/permission denied for table login_failures/,
      'rewriting the failures counted (it adds and removes them only)' ],
    [ "SELECT setval('procedures_id_seq', 1)",
      qr/permission denied for sequence procedures_id_seq/,
      'moving a sequence it does not use' ],
);
for my $case (@refused) {
    my ($sql, $re, $what) = @$case;
    my $err = refused($sql);
    ok(defined $err, "N-PRIV-1: the runtime role is refused $what");
    like($err // '', $re, "... by PostgreSQL ($sql)");
}

# its grants are its own: passed on, they give nobody anything
$t->psql('SET client_min_messages = error;'
         . ' GRANT SELECT ON citizens TO PUBLIC', user => 'shinsei');
is($t->psql("SELECT has_table_privilege('public', 'citizens', 'SELECT')"), 'f',
   'N-PRIV-1: the runtime role cannot hand its grants on (no GRANT OPTION)');

# what it needs, it has
for my $sql ('SELECT count(*) FROM citizens', 'SELECT count(*) FROM cities',
             "UPDATE sessions SET last_seen_at = now() WHERE false",
             'DELETE FROM outbox WHERE false',
             "SELECT nextval('tokens_id_seq') > 0") {
    ok(!defined refused($sql), "the runtime role may: $sql");
}

is($t->psql('SELECT count(*) FROM procedures'),
   $t->psql('SELECT count(*) FROM procedures', user => 'shinsei'),
   'the catalogue is whole after all of that');

$t->done;
done_testing;
