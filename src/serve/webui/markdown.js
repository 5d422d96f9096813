// A small Markdown renderer for model replies: fenced code blocks, inline code, headings,
// lists, block quotes, bold, italics and http(s) links. Safe by construction: every piece
// of the input is HTML-escaped before any tag of ours is put around it, and a link's
// target must start with http:// or https://. An unclosed fence (a reply still
// streaming) runs to the end.
"use strict";

function escapeHtml(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
             .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

// Emphasis and links inside text that is already escaped.
function renderEmphasis(escaped) {
  return escaped
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>')
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/__([^_]+)__/g, "<strong>$1</strong>")
    .replace(/(^|[^*\w])\*([^*\s][^*]*)\*(?!\w)/g, "$1<em>$2</em>");
}

// One line of text: `code` spans are escaped verbatim, the rest gets emphasis.
function renderInline(text) {
  const parts = text.split(/(`[^`]+`)/);
  return parts.map((p) => p.length > 1 && p.startsWith("`") && p.endsWith("`")
    ? "<code>" + escapeHtml(p.slice(1, -1)) + "</code>"
    : renderEmphasis(escapeHtml(p))).join("");
}

function renderMarkdown(source) {
  const lines = source.replace(/\r\n/g, "\n").split("\n");
  const out = [];
  let paragraph = [];
  let list = null;  // {tag: "ul"|"ol", items: []}
  const flushParagraph = () => {
    if (paragraph.length) out.push("<p>" + paragraph.map(renderInline).join("<br>") + "</p>");
    paragraph = [];
  };
  const flushList = () => {
    if (list) out.push("<" + list.tag + ">" + list.items.map((i) => "<li>" + renderInline(i) + "</li>").join("") + "</" + list.tag + ">");
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+#.-]*)\s*$/);
    if (fence) {
      flushParagraph();
      flushList();
      const code = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) code.push(lines[i]);
      const lang = fence[2] ? ' class="language-' + escapeHtml(fence[2]) + '"' : "";
      out.push("<pre><code" + lang + ">" + escapeHtml(code.join("\n")) + "</code></pre>");
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const bullet = line.match(/^\s*[-*+]\s+(.*)$/);
    const numbered = line.match(/^\s*\d+[.)]\s+(.*)$/);
    const quote = line.match(/^>\s?(.*)$/);
    if (heading) {
      flushParagraph();
      flushList();
      const n = heading[1].length;
      out.push("<h" + n + ">" + renderInline(heading[2]) + "</h" + n + ">");
    } else if (bullet || numbered) {
      flushParagraph();
      const tag = bullet ? "ul" : "ol";
      if (list && list.tag !== tag) flushList();
      if (!list) list = {tag, items: []};
      list.items.push((bullet || numbered)[1]);
    } else if (quote) {
      flushParagraph();
      flushList();
      out.push("<blockquote>" + renderInline(quote[1]) + "</blockquote>");
    } else if (line.trim() === "") {
      flushParagraph();
      flushList();
    } else {
      flushList();
      paragraph.push(line);
    }
  }
  flushParagraph();
  flushList();
  return out.join("\n");
}
