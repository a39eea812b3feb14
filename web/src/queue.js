// The phone's offline queue in IndexedDB: drafts and reports waiting to be sent (the outbox), each
// keyed by its Idempotency-Key, photos kept as Blobs. localStorage holds ~5 MB of strings in all and a
// phone photo is several MB, so a queue there (photos as data: URLs, +33 %) filled up after one or two.
const DB_NAME = 'gridserver-m';
export const STORES = ['drafts', 'outbox'];
let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, 1);
      req.onupgradeneeded = () => {
        for (const s of STORES) if (!req.result.objectStoreNames.contains(s)) req.result.createObjectStore(s, { keyPath: 'key' });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => { opening = null; reject(req.error); };
    });
  }
  return opening;
}

/** Run fn(stores...) in one transaction over `names`; resolves with fn's request result once committed. */
async function run(names, mode, fn) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(names, mode);
    const req = fn(...names.map((n) => tx.objectStore(n)));
    tx.oncomplete = () => resolve(req?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('IndexedDB transaction aborted'));
  });
}

const order = (a, b) => String(a.saved_at).localeCompare(String(b.saved_at)) || String(a.key).localeCompare(String(b.key));

/** Every item of a store, oldest first. */
export const all = async (store) => ((await run([store], 'readonly', (s) => s.getAll())) || []).sort(order);
export const put = (store, item) => run([store], 'readwrite', (s) => s.put(item));
export const remove = (store, key) => run([store], 'readwrite', (s) => s.delete(key));
/** Move an item (that had key `oldKey` in `from`) to another store in one transaction: never in both, never lost. */
export const move = (from, to, item, oldKey = item.key) => run([from, to], 'readwrite', (a, b) => { a.delete(oldKey); return b.put(item); });

function dataUrlToBlob(url) {
  const [head, b64] = url.split(',');
  const type = head.match(/data:([^;]+)/)?.[1] || 'application/octet-stream';
  const bin = atob(b64);
  const arr = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) arr[i] = bin.charCodeAt(i);
  return new Blob([arr], { type });
}

/** Once: move a queue kept in localStorage by earlier versions ({store: localStorage key}) into
 * IndexedDB, photos (data: URLs) as Blobs. The old keys are removed only after the transaction
 * committed, and items keep their Idempotency-Key, so a report sent before never doubles. */
export async function migrateFromLocalStorage(keys) {
  const found = {};
  for (const [store, lsKey] of Object.entries(keys)) {
    let items;
    try { items = JSON.parse(localStorage.getItem(lsKey) || 'null'); } catch { items = null; }
    if (Array.isArray(items)) found[store] = items;
  }
  const stores = Object.keys(found);
  if (!stores.length) return 0;
  let n = 0;
  await run(stores, 'readwrite', (...objectStores) => {
    stores.forEach((store, i) => {
      for (const item of found[store]) {
        if (!item || !item.key) continue;
        const photo = item.photo?.data ? { name: item.photo.name, type: item.photo.type, blob: dataUrlToBlob(item.photo.data) } : null;
        objectStores[i].put({ ...item, photo, saved_at: item.saved_at || new Date(0).toISOString() });
        n += 1;
      }
    });
  });
  for (const store of stores) localStorage.removeItem(keys[store]);
  return n;
}
