// The camera without the element's page: opening the back camera, waiting for its first picture,
// the square under the guide as pixels and as a preview JPEG, the torch. <derm-screen> shows
// what these say and decides when to call them.

// Side of the capture square as a fraction of the shorter side of the camera frame; the
// element's on-screen guide shows the same square.
export const GUIDE_FRACTION = 0.7;
// Camera crops are scaled to at most this side before they go to the classifier.
const CAPTURE_MAX_SIDE = 448;
// How long a photo taken waits for a camera that has not sent its first picture yet.
const FIRST_PICTURE_MS = 5000;

const CAMERA_ERRORS = {
  NotAllowedError: 'Camera access was denied. Allow it in the browser\'s site settings, or choose a photo instead.',
  SecurityError: 'Camera access is blocked on this page. Choose a photo instead.',
  NotFoundError: 'No camera was found on this device. Choose a photo instead.',
  OverconstrainedError: 'No suitable camera was found on this device. Choose a photo instead.',
  NotReadableError: 'The camera is in use by another app. Close it and try again, or choose a photo instead.',
};

/**
 * Opens the back camera where there is one. Resolves to its MediaStream; rejects with an Error
 * whose message says, in words for the person, why not and what to do instead.
 */
export async function openCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error('This browser cannot use a camera on this page (it needs a secure https:// address). Choose a photo instead.');
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      video: { facingMode: { ideal: 'environment' }, width: { ideal: 1280 }, height: { ideal: 1280 } },
      audio: false,
    });
  } catch (e) {
    throw new Error(CAMERA_ERRORS[e.name] ?? `The camera could not be started (${e.message}). Choose a photo instead.`);
  }
}

/** Turns a camera stream off (its light too). */
export const stopTracks = (stream) => { for (const track of stream.getTracks()) track.stop(); };

/** Whether the camera of `track` has a torch the page may switch. */
export const hasTorch = (track) => Boolean(track.getCapabilities?.().torch);

/** Switches the torch of `track` on or off; rejects where the camera refuses. */
export const setTorch = (track, on) => track.applyConstraints({ advanced: [{ torch: on }] });

/**
 * Resolves once `video` has a picture to draw (true), or false after FIRST_PICTURE_MS or once
 * its source is taken away (the camera closed): a phone's camera can take a second or more
 * after it is granted to send its first.
 */
export const firstPicture = (video) => new Promise((resolve) => {
  if (video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA) {
    resolve(true);
    return;
  }
  const done = (came) => {
    clearTimeout(timer);
    video.removeEventListener('loadeddata', onData);
    video.removeEventListener('emptied', onGone);
    resolve(came);
  };
  const onData = () => done(true);
  const onGone = () => done(false);
  const timer = setTimeout(onGone, FIRST_PICTURE_MS);
  video.addEventListener('loadeddata', onData);
  video.addEventListener('emptied', onGone);
});

/**
 * The square under the guide in `video`'s current picture, at most CAPTURE_MAX_SIDE px a side:
 * `rgba` its pixels (Uint8Array, side * side * 4), `side` its size, and `preview` a JPEG Blob
 * of it for the result.
 */
export function guideSquare(video) {
  const taken = Math.round(Math.min(video.videoWidth, video.videoHeight) * GUIDE_FRACTION);
  const side = Math.min(taken, CAPTURE_MAX_SIDE);
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = side;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, (video.videoWidth - taken) / 2, (video.videoHeight - taken) / 2, taken, taken, 0, 0, side, side);
  const rgba = new Uint8Array(ctx.getImageData(0, 0, side, side).data.buffer);
  return { rgba, side, preview: jpegNow(canvas) };
}

/**
 * `canvas` as a JPEG Blob, encoded now. toBlob() waits for the page to be idle, which during a
 * check it seldom is: in Chromium up to its one-second timeout, a second on every camera photo.
 */
function jpegNow(canvas) {
  const base64 = canvas.toDataURL('image/jpeg', 0.9).split(',')[1];
  return new Blob([Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))], { type: 'image/jpeg' });
}
