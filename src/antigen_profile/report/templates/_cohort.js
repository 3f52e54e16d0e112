/* Sort and filter the cohort table. Inline, no library, no network; allowed by the page's
   Content-Security-Policy through its SHA-256. Without JavaScript the table shows every specimen
   in recommendations.tsv order and the controls stay hidden. */
(function () {
  "use strict";
  var table = document.getElementById("samples-table");
  if (!table || !table.tHead || !table.tBodies.length) { return; }
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var rows = Array.prototype.slice.call(body.rows).filter(function (row) {
    return row.hasAttribute("data-decision");
  });
  var text = document.getElementById("sample-filter");
  var decision = document.getElementById("decision-filter");
  var shown = document.getElementById("samples-shown");
  rows.forEach(function (row, i) { row.setAttribute("data-index", String(i)); });

  function key(row, col) {
    var cell = row.cells[col];
    if (!cell) { return ""; }
    if (cell.hasAttribute("data-sort")) { return cell.getAttribute("data-sort"); }
    return cell.textContent.replace(/\s+/g, " ").trim().toLowerCase();
  }

  function sortBy(col, numeric, descending) {
    var sorted = rows.slice().sort(function (a, b) {
      var x = key(a, col), y = key(b, col);
      var order = Number(a.getAttribute("data-index")) - Number(b.getAttribute("data-index"));
      if (x === "" || y === "") {  /* no value: last, whatever the direction */
        return x === y ? order : (x === "" ? 1 : -1);
      }
      var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      if (c === 0 || isNaN(c)) { return order; }
      return descending ? -c : c;
    });
    sorted.forEach(function (row) { body.appendChild(row); });
  }

  heads.forEach(function (th, col) {
    var button = th.querySelector("button");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") === "ascending";
      heads.forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      sortBy(col, th.getAttribute("data-type") === "num", descending);
    });
  });

  function filter() {
    var terms = text ? text.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
    var wanted = decision ? decision.value : "";
    var count = 0;
    rows.forEach(function (row) {
      var content = row.textContent.toLowerCase();
      var keep = (!wanted || row.getAttribute("data-decision") === wanted) &&
        terms.every(function (term) { return content.indexOf(term) !== -1; });
      row.hidden = !keep;
      count += keep ? 1 : 0;
    });
    if (shown) { shown.textContent = count + " of " + rows.length + " specimens shown"; }
  }

  if (text) { text.addEventListener("input", filter); }
  if (decision) { decision.addEventListener("change", filter); }
  var controls = document.getElementById("filter-controls");
  if (controls) { controls.hidden = false; }
  filter();
}());
