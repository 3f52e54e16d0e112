/* The sign-off form: fills in this specimen's review.tsv row from what the reviewer entered,
   to copy or download. Inline, no library, no network, nothing sent anywhere; allowed by the
   page's Content-Security-Policy through its SHA-256. The row's hash is the result the
   reviewer looked at: the workflow signs the review only while the result still has it. */
(function () {
  "use strict";
  var box = document.getElementById("signoff");
  if (!box) { return; }
  var header = ["specimen_id", "reviewer", "verdict", "final_targets", "reason", "date",
                "result_hash"];
  var out = document.getElementById("signoff-row");
  var link = document.getElementById("signoff-download");
  var note = document.getElementById("signoff-missing");
  function value(id) {
    var field = document.getElementById(id);
    return field ? field.value : "";
  }
  function clean(text) {
    return String(text).replace(/[\t\r\n]+/g, " ").trim();
  }
  function targets() {
    var boxes = box.querySelectorAll("input[name=final-target]");
    var chosen = [];
    Array.prototype.forEach.call(boxes, function (b) { if (b.checked) { chosen.push(b.value); } });
    return chosen;
  }
  function update() {
    var verdict = value("signoff-verdict");
    var chosen = targets();
    var finalTargets = verdict === "override" ? (chosen.length ? chosen.join(",") : "none") : "";
    var row = [box.getAttribute("data-specimen"), clean(value("signoff-reviewer")), verdict,
               finalTargets, verdict === "override" ? clean(value("signoff-reason")) : "",
               value("signoff-date"), box.getAttribute("data-hash")];
    var missing = [];
    if (!row[1]) { missing.push("reviewer"); }
    if (!row[5]) { missing.push("date"); }
    if (verdict === "override" && !row[4]) { missing.push("reason"); }
    document.getElementById("signoff-targets").disabled = verdict !== "override";
    note.textContent = missing.length ? "Still needed: " + missing.join(", ") + "." : "";
    out.value = row.join("\t");
    var file = header.join("\t") + "\n" + row.join("\t") + "\n";
    link.setAttribute("href", "data:text/tab-separated-values;charset=utf-8," +
                      encodeURIComponent(file));
  }
  box.addEventListener("input", update);
  box.addEventListener("change", update);
  update();
}());
