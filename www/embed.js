// Host-side code of embed.html: what a telehealth site writes to use <derm-screen>.
import { DermScreen } from './derm-screen.js';

const log = document.getElementById('log');
const screen = document.getElementById('screen');
const show = (line) => { log.textContent = `${line}\n${log.textContent}`; };

if (!DermScreen.isSupported()) show('isSupported(): false: this browser cannot run the classifier');
screen.addEventListener('dermscreen:result', (e) => {
  show(`dermscreen:result ${JSON.stringify(e.detail)}`);
});
screen.addEventListener('dermscreen:error', (e) => {
  show(`dermscreen:error ${JSON.stringify(e.detail)}`);
});
