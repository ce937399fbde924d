// A Cedar grammar for highlight.js (the console's own: highlight.js ships none). Cedar's
// syntax: https://docs.cedarpolicy.com/policies/syntax-grammar.html
"use strict";
(function () {
  if (!window.hljs) return;
  window.hljs.registerLanguage("cedar", (hljs) => ({
    name: "Cedar",
    keywords: {
      keyword: "permit forbid when unless in has like is if then else",
      literal: "true false",
      built_in: "principal action resource context",
    },
    contains: [
      hljs.C_LINE_COMMENT_MODE,
      hljs.QUOTE_STRING_MODE,
      hljs.C_NUMBER_MODE,
      { className: "meta", begin: /@[A-Za-z_][A-Za-z0-9_]*/ },
      { className: "type", begin: /\b[A-Z][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*(?=::")/ },
      { className: "type", begin: /\b[A-Z][A-Za-z0-9_]*::[A-Z][A-Za-z0-9_]*\b/ },
      { className: "title.function", begin: /\.\s*[a-zA-Z_][A-Za-z0-9_]*(?=\()/ },
      { className: "operator", begin: /==|!=|<=|>=|&&|\|\||[<>!]/ },
    ],
  }));
})();
