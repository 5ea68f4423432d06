/*
 * Small enhancements only: every page works without this file.
 * After a refused form, focus moves to the error summary so that screen
 * reader users hear what to correct (GOV.UK error summary pattern).
 */
(function () {
  'use strict';
  var summary = document.querySelector('[data-autofocus]');
  if (summary) {
    summary.focus();
  }
}());
