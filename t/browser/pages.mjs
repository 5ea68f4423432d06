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

export const widths = [1280, 320];

export const pages = [
    { path: '/' },
    { path: '/procedures/koseki' },
    { path: '/no-such-page', status: 404 },
];
