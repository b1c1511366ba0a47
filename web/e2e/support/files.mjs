// Files for the attachment tests: real PNG images (made here with zlib), a small PDF, and a
// Windows executable's first bytes (to rename as an image).
import { deflateSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** @param {Buffer} buf */
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** @param {string} type @param {Buffer} data */
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/**
 * A PNG of `width` x `height`: a diagonal gradient between two colours with a white disc, so
 * a thumbnail of it is recognisable in a screenshot.
 * @param {number} width @param {number} height @param {[number, number, number]} [from] @param {[number, number, number]} [to]
 */
export function makePng(width, height, from = [255, 140, 60], to = [90, 60, 200]) {
  const rows = [];
  const r = Math.min(width, height) / 5;
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x++) {
      const t = (x / width + y / height) / 2;
      let px = from.map((c, i) => Math.round(c + (to[i] - c) * t));
      if ((x - width * 0.68) ** 2 + (y - height * 0.35) ** 2 < r * r) px = [255, 250, 235];
      row.set(px, 1 + x * 3);
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0))]);
}

/** A minimal (valid enough) PDF. */
export const PDF = Buffer.from(
  '%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n',
  'latin1',
);

/** The start of a Windows executable ("MZ" header), to be renamed holiday.png. */
export const EXE = Buffer.concat([Buffer.from([0x4d, 0x5a, 0x90, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00]), Buffer.from('This program cannot be run in DOS mode.\r\n', 'latin1'), Buffer.alloc(200, 0x90)]);

/**
 * Put files on the page's composer as a paste (`paste`) or a drop onto the conversation
 * (`drop`), with a DataTransfer made in the page.
 * @param {import('playwright-core').Page} page
 * @param {'paste'|'drop'} how
 * @param {{name: string, type: string, data: Buffer}[]} files
 */
export async function transferFiles(page, how, files) {
  await page.evaluate(
    ({ how, files }) => {
      const dt = new DataTransfer();
      for (const f of files) {
        const bin = atob(f.b64);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        dt.items.add(new File([bytes], f.name, { type: f.type }));
      }
      if (how === 'paste') {
        const input = /** @type {HTMLElement} */ (document.querySelector('.composer-input'));
        input.focus();
        input.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
      } else {
        const target = /** @type {HTMLElement} */ (document.querySelector('.messages'));
        for (const type of ['dragenter', 'dragover', 'drop']) target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
      }
    },
    { how, files: files.map((f) => ({ name: f.name, type: f.type, b64: f.data.toString('base64') })) },
  );
}
