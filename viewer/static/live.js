// Live trial: append each new event to the page as it is recorded; reload once the
// trial has finished so the page shows its scores. Text goes in through textContent
// only: event details carry agent output, which is untrusted.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var rows = document.getElementById("event-rows");
  var url = "/api/trials/" + encodeURIComponent(live.dataset.trial) + "/events?after=" +
    encodeURIComponent(live.dataset.after || "0");
  var source = new EventSource(url);

  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    row.appendChild(td);
  }

  source.addEventListener("trial-event", function (msg) {
    var e = JSON.parse(msg.data);
    var row = document.createElement("tr");
    row.className = "ev-" + e.type + " fresh";
    cell(row, String(e.version), "n");
    cell(row, e.offset_s.toFixed(3), "n");
    cell(row, e.type);
    cell(row, e.text);
    rows.appendChild(row);
    status.textContent = "running: last event " + e.type + " at " + e.offset_s.toFixed(1) + " s.";
    if (e.type === "CommandProposed" || e.type === "CommandDecided") {
      // A command held for (or released from) a person's decision: the page shows its form.
      source.close();
      window.location.reload();
    }
  });

  source.addEventListener("finished", function () {
    source.close();
    status.textContent = "the trial has finished: loading its results…";
    window.setTimeout(function () { window.location.reload(); }, 800);
  });

  source.onerror = function () {
    status.textContent = "connection to the viewer lost; retrying…";
  };
}());
