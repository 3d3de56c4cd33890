// A paged list of the API (limit + cursor) shown with a "Load more" button.

import * as api from "../api.js";
import { html, useState, useEffect, useCallback, useRef, ErrorBox, Loading } from "../ui.js";

/** {items, error, loading, hasMore, loadMore, reload} for GET `path` with `query`. */
export function usePaged(path, query = {}, deps = []) {
  const [state, setState] = useState({ items: [], cursor: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  // Which list is shown: a "Load more" answer that arrives after the filters (or the context)
  // changed belongs to the list before, and is dropped rather than appended to this one.
  const generation = useRef(0);
  const key = JSON.stringify(query);
  useEffect(() => {
    let live = true;
    generation.current += 1;
    setState({ items: [], cursor: null, error: null, loading: true });
    api.get(path, { ...query, limit: 20 }).then(
      (page) => live && setState({ items: page.items, cursor: page.next_cursor, error: null, loading: false }),
      (error) => live && setState({ items: [], cursor: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [path, key, tick, ...deps]);
  const loadMore = async () => {
    const asked = generation.current;
    setState((s) => ({ ...s, loading: true, error: null }));
    try {
      const page = await api.get(path, { ...query, limit: 20, cursor: state.cursor });
      if (asked !== generation.current) return;
      setState((s) => ({ items: [...s.items, ...page.items], cursor: page.next_cursor, error: null, loading: false }));
    } catch (error) {
      if (asked !== generation.current) return;
      setState((s) => ({ ...s, error, loading: false }));
    }
  };
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, hasMore: Boolean(state.cursor), loadMore, reload };
}

/** The list's footer: loading, its error, and "Load more" while the API has more. */
export function MoreFooter({ list, label }) {
  return html`<div class="list-footer">
    ${list.loading && html`<${Loading} />`}
    <${ErrorBox} error=${list.error} />
    ${list.hasMore && !list.loading && html`<button type="button" class="secondary" onClick=${list.loadMore}>${label || "Load more"}</button>`}
  </div>`;
}
