// The only script of the public pages: on a times page opened without a chosen zone, show the
// times in the visitor's own zone (the page works without it, in UTC, with a zone picker).
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
