// Accessibility and layout checks run in the page by the browser tests: language, title,
// one h1 and no skipped heading level, a label for every form field, a name for every link
// and button, alt text on images, WCAG AA contrast of every visible text against its
// background, and no horizontal scrolling. Answers the problems found and the widths.
return (function () {
  const doc = document;
  const problems = [];
  if (!doc.documentElement.lang) problems.push("html has no lang");
  if (!doc.title.trim()) problems.push("no title");
  const h1 = doc.querySelectorAll("h1");
  if (h1.length !== 1) problems.push(h1.length + " h1 elements");
  let last = 0;
  for (const h of doc.querySelectorAll("h1,h2,h3,h4,h5,h6")) {
    const level = Number(h.tagName[1]);
    if (last && level > last + 1) problems.push("h" + level + " after h" + last + ": " + h.textContent.trim());
    if (!h.textContent.trim()) problems.push("empty " + h.tagName);
    last = level;
  }
  for (const el of doc.querySelectorAll("input,select,textarea")) {
    if (el.type === "hidden") continue;
    const labelled = (el.id && doc.querySelector('label[for="' + el.id + '"]')) ||
      el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") || el.closest("label");
    if (!labelled) problems.push("unlabelled " + el.tagName + " " + el.name);
  }
  for (const el of doc.querySelectorAll("a,button")) {
    if (!(el.getAttribute("aria-label") || el.textContent || "").trim()) problems.push(el.tagName + " without a name");
  }
  for (const img of doc.querySelectorAll("img")) {
    if (!img.hasAttribute("alt")) problems.push("img without alt");
  }
  const rgb = (s) => {
    const m = s.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(",").map(parseFloat);
    return p.length === 4 ? p : p.concat([1]);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) return c;
    }
    return [255, 255, 255, 1];
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const walker = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  let checked = 0;
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent.trim();
    const el = walker.currentNode.parentElement;
    if (!text || seen.has(el)) continue;
    seen.add(el);
    const cs = getComputedStyle(el);
    if (cs.visibility === "hidden" || el.closest(".sr-only,.skip,[hidden]") || el.offsetParent === null && cs.position !== "fixed") continue;
    const a = lum(rgb(cs.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(cs.fontSize);
    const need = size >= 24 || (Number(cs.fontWeight) >= 700 && size >= 18.66) ? 3 : 4.5;
    checked += 1;
    if (ratio < need) problems.push("contrast " + ratio.toFixed(2) + " < " + need + ": " + text.slice(0, 40));
  }
  if (checked === 0) problems.push("no visible text checked");
  const root = doc.documentElement;
  return { problems: problems, checked: checked, scrollWidth: root.scrollWidth,
           clientWidth: root.clientWidth, innerWidth: window.innerWidth };
})();
