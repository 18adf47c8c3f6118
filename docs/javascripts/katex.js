// Renders the formulas that pymdownx.arithmatex (generic mode) wraps in
// <span class="arithmatex">\( ... \)</span> and <div class="arithmatex">
// \[ ... \]</div>, with the KaTeX copy served from the site itself.
// Material's instant navigation swaps pages without a reload, so render
// on every page change.
document$.subscribe(() => {
  for (const element of document.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  }
});
