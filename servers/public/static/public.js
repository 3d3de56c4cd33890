// The only script of the public pages. On a times page opened without a chosen zone, show the
// times in the visitor's own zone (the page works without it, in UTC, with a zone picker); book
// a hand-linked time in that zone; and say a conversation's times in the visitor's zone
// (written in UTC without it).
const picker = document.querySelector("select[data-detect='yes']");
if (picker) {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const known = zone && Array.from(picker.options).some((o) => o.value === zone);
  if (known && zone !== picker.value) {
    const url = new URL(window.location.href);
    url.searchParams.set("tz", zone);
    window.location.replace(url.toString());
  }
}

// A form reached by a hand-made link (no zone chosen) books in the visitor's own zone, so the
// manage page and reminders say their times the way the visitor reads them, not in UTC.
const zoneField = document.querySelector("input[name='tz'][data-detect='yes']");
if (zoneField && !zoneField.value) {
  zoneField.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
}

// dateStyle/timeStyle cannot be combined with timeZoneName: the parts are named one by one.
const local = new Intl.DateTimeFormat(undefined, {
  day: "numeric", month: "short", year: "numeric", hour: "numeric", minute: "2-digit", timeZoneName: "short",
});
for (const t of document.querySelectorAll("time[data-local='yes']")) {
  const at = new Date(t.getAttribute("datetime"));
  if (!Number.isNaN(at.getTime())) t.textContent = local.format(at);
}

// A time of today's conversation ("You already sent this at …"): the hour alone.
const clock = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", timeZoneName: "short" });
for (const t of document.querySelectorAll("time[data-local='time']")) {
  const at = new Date(t.getAttribute("datetime"));
  if (!Number.isNaN(at.getTime())) t.textContent = clock.format(at);
}
