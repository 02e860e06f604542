// The standalone app page: the <derm-screen> element, plus offline use through a service worker.
// ?backend=cpu|webgpu on the page address picks the backend (for comparisons); default auto.

const screen = document.getElementById('screen');
const backend = new URLSearchParams(location.search).get('backend');
if (backend) screen.setAttribute('backend', backend);
// Defined only now, so the element reads the backend attribute when it starts.
await import('./derm-screen.js');

// The element takes what is pasted into it; on this page it is all there is, so a photo pasted
// with the focus anywhere else (the page itself, after a click on its text) goes to it too.
document.addEventListener('paste', (e) => {
  if (e.composedPath().includes(screen)) return; // the element had it
  screen.dispatchEvent(new ClipboardEvent('paste', { clipboardData: e.clipboardData }));
});

if ('serviceWorker' in navigator) {
  const note = document.querySelector('.offline');
  const { loadedBuilds } = await import('./engine.js');
  // Registered once the classifier has loaded (or failed to): the worker saves the same files,
  // and started beside the page's own downloads it fetched the engine a second time, sharing the
  // connection with the first. After them it revalidates each file (sw.js): one the browser's
  // cache kept comes back as a 304, not a second download; one it did not keep (some browsers
  // keep no 17 MB entry) is downloaded again, but no longer alongside the page's own.
  // The worker keeps the engine build(s) this page used (sw.js), named in its address.
  let updating = false;
  screen.ready.catch(() => {}).then(() => {
    const builds = loadedBuilds();
    const script = new URL(builds.length ? `sw.js?engine=${builds.join(',')}` : 'sw.js', location.href);
    // Only a page that an older version already controlled has an update to announce; one that
    // names another engine build installs the worker again for that build, which is no update.
    const controller = navigator.serviceWorker.controller;
    updating = controller !== null && new URL(controller.scriptURL).search === script.search;
    return navigator.serviceWorker.register(script);
  }).then(
    (reg) => {
      reg.addEventListener('updatefound', () => {
        const next = reg.installing;
        next?.addEventListener('statechange', () => {
          if (next.state === 'activated' && updating) {
            note.textContent = 'A new version was downloaded; it is used from the next visit.';
          } else if (next.state === 'redundant' && !reg.active) {
            // The worker refused a file that was not the build's (sw.js): say so, rather than
            // let the person count on a copy that is not there. (With a version already
            // saved, that one goes on working offline, and its line stands.)
            note.textContent = 'Not saved for offline use this time: a download did not arrive whole. The next visit tries again.';
          }
        });
      });
      navigator.serviceWorker.ready.then(() => {
        note.textContent = 'Saved on this device: works offline from now on.';
      });
    },
    (e) => { note.textContent = `Offline use is not available (${e.message}).`; },
  );
}
