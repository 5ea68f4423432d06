// The pages the browser checks visit (t/080-browser.t runs them all).
//
// Add an entry for every new route, and one for each state of it a person
// can reach (an empty submit, an error summary, a confirmation), since axe
// only sees what the browser has rendered.  An entry:
//
//   {
//     path: '/procedures/koseki',   // required; relative to the base URL
//     name: 'empty submit',         // optional; tells two entries of one
//                                   // path apart in the test names
//     status: 200,                  // the HTTP status of the page checked
//                                   // (the last navigation), default 200
//     widths: [1280, 320],          // optional; default: every width
//     actions: [                    // optional simple steps, in order:
//       { fill: '#name', value: '葛城 太郎' },
//       { check: '#agree' },        // checkbox or radio
//       { uncheck: '#agree' },
//       { select: '#copies', value: '2' },
//       { press: '#name', key: 'Enter' },
//       { click: 'button[type=submit]' },   // waits for the page it loads
//       { goto: '/procedures/koseki/apply' },
//       { waitFor: '.error-summary' },
//     ],
//     setup: async (page, { baseURL }) => { ... },  // optional; runs after
//                                   // the actions, with Playwright's page
//     focus: '.error-summary',      // optional: after the steps, this
//                                   // element must hold the focus (for
//                                   // error summaries that take focus)
//     checks: ['axe', 'reflow', 'skiplink'],  // optional; default all
//     axe: {                        // optional; every exception needs a
//       disableRules: [],           // comment saying why
//       exclude: [],                // CSS selectors axe should skip
//     },
//   }
//
// Each entry runs in a fresh browser context (no cookies from other
// entries), so an entry that needs a login or a draft makes it in its own
// actions.

// Some pages need what only the Perl side can make, since it reads the
// mail: t/080-browser.t signs up a verified account and passes it in the
// environment, with links from the mails it received:
//
//   SHINSEI_A11Y_EMAIL, SHINSEI_A11Y_PASSWORD   a verified account
//   SHINSEI_A11Y_VERIFY    /verify?t=...         of another, unverified one
//   SHINSEI_A11Y_RESET     /password/reset?t=... of the verified account
//   SHINSEI_A11Y_CONFIRM   /email/confirm?t=...  a change of its address
//
// The entries that use them log in through the form or open the link in
// their steps; none of them submits a form that changes the account.  When
// one is missing (a11y.mjs run by hand), only those entries fail.

export const widths = [1280, 320];

const env = process.env;
const submit = { click: 'main form button[type=submit]' };

// steps that need environment variables: the steps if all are set,
// otherwise a setup that fails with the reason
function needing(names, steps) {
    const missing = names.filter((n) => !env[n]);
    if (missing.length === 0) return { actions: steps };
    return {
        setup: async () => {
            throw new Error(`${missing.join(' and ')} not set `
                            + '(t/080-browser.t sets them)');
        },
    };
}

// log in through the form, then open path and take the further steps;
// the page checked must still be a logged-in one (not the login form a
// lost session redirects to, which answers 200 as well)
const stillLoggedIn = { waitFor: '.site-nav__user' };

function asResident(path, ...more) {
    return needing(['SHINSEI_A11Y_EMAIL', 'SHINSEI_A11Y_PASSWORD'], [
        { goto: '/login' },
        { fill: '#field-email', value: env.SHINSEI_A11Y_EMAIL },
        { fill: '#field-password', value: env.SHINSEI_A11Y_PASSWORD },
        submit,
        stillLoggedIn,
        { goto: path },
        ...more,
        stillLoggedIn,
    ]);
}

// open the link of a mail, which must show its form (not "already used")
function mailLink(name) {
    return needing([name], [{ goto: env[name] }, { waitFor: 'main form' }]);
}

export const pages = [
    { path: '/' },
    { path: '/procedures/koseki' },
    { path: '/no-such-page', status: 404 },

    // signing up
    { path: '/signup' },
    { path: '/signup', name: 'empty submit', status: 422,
      actions: [submit], focus: '.error-summary' },
    { path: '/signup', name: 'bad address', status: 422,
      actions: [
          { fill: '#field-name', value: '葛城 太郎' },
          { fill: '#field-name_kana', value: 'カツラギ タロウ' },
          { fill: '#field-email', value: 'taro.example.jp' },
          submit,
      ],
      focus: '.error-summary' },
    { path: '/signup/sent' },
    { path: '/verify', name: 'link from the mail', ...mailLink('SHINSEI_A11Y_VERIFY') },
    { path: '/verify', name: 'a too short password', status: 422,
      ...needing(['SHINSEI_A11Y_VERIFY'], [
          { goto: env.SHINSEI_A11Y_VERIFY },
          { fill: '#field-password', value: 'short' },
          submit,
      ]),
      focus: '.error-summary' },
    { path: '/verify?t=invalid', name: 'unknown link', status: 404 },

    // logging in and out
    { path: '/login' },
    { path: '/login', name: 'wrong credentials', status: 422,
      actions: [
          // an address without an account, so that no account is paused
          { fill: '#field-email', value: 'nobody@example.jp' },
          { fill: '#field-password', value: 'not the password' },
          submit,
      ],
      focus: '.error-summary' },
    { path: '/login?m=verified', name: 'address verified' },
    { path: '/login?expired=1', name: 'session expired' },
    { path: '/logout', name: 'not logged in: goes to the login page',
      actions: [{ waitFor: 'main form[action="/login"]' }] },
    { path: '/logout', name: 'logged in', ...asResident('/logout') },

    // a forgotten password
    { path: '/password/forgot' },
    { path: '/password/forgot', name: 'empty submit', status: 422,
      actions: [submit], focus: '.error-summary' },
    { path: '/password/forgot/sent' },
    { path: '/password/reset', name: 'link from the mail', ...mailLink('SHINSEI_A11Y_RESET') },
    { path: '/password/reset?t=invalid', name: 'unknown link', status: 404 },

    // my page
    { path: '/mypage', ...asResident('/mypage') },
    { path: '/mypage/password?m=password_short', name: 'asked to change a short password',
      ...asResident('/mypage/password?m=password_short') },
    { path: '/mypage/name', ...asResident('/mypage/name') },
    { path: '/mypage/name', name: 'empty submit', status: 422,
      ...asResident('/mypage/name', { fill: '#field-name', value: '' }, submit),
      focus: '.error-summary' },
    { path: '/mypage/password', ...asResident('/mypage/password') },
    { path: '/mypage/password', name: 'empty submit', status: 422,
      ...asResident('/mypage/password', submit), focus: '.error-summary' },
    { path: '/mypage/email', ...asResident('/mypage/email') },
    { path: '/mypage/email', name: 'bad address', status: 422,
      ...asResident('/mypage/email',
                    { fill: '#field-email', value: 'taro.example.jp' }, submit),
      focus: '.error-summary' },
    { path: '/mypage/email/sent', ...asResident('/mypage/email/sent') },
    { path: '/email/confirm', name: 'link from the mail', ...mailLink('SHINSEI_A11Y_CONFIRM') },
    { path: '/email/confirm?t=invalid', name: 'unknown link', status: 404 },
    { path: '/mypage/delete', ...asResident('/mypage/delete') },
    { path: '/mypage/delete', name: 'empty submit', status: 422,
      ...asResident('/mypage/delete', submit), focus: '.error-summary' },
    { path: '/goodbye' },
];
