// A camera for Chromium's fake capture device (--use-file-for-fake-video-capture): a
// short YUV4MPEG2 video whose frames all show one QR code, black on white with its
// quiet zone, as a letter held in front of a phone would.

import { writeFileSync } from 'node:fs';

import QRCode from 'qrcode';

// Studio-range luma, as Chromium reads a Y4M file; chroma at 128 is grey.
const BLACK = 16;
const WHITE = 235;
const QUIET_ZONE = 4;

/** Writes a 4:2:0 Y4M video of `frames` frames showing the QR code of `text`. */
export function writeQrVideo(path, text, { width = 640, height = 480, frames = 5 } = {}) {
  const { size, data } = QRCode.create(text, { errorCorrectionLevel: 'M' }).modules;
  const modules = size + 2 * QUIET_ZONE;
  const scale = Math.floor((Math.min(width, height) * 0.9) / modules);
  const left = Math.floor((width - modules * scale) / 2) + QUIET_ZONE * scale;
  const top = Math.floor((height - modules * scale) / 2) + QUIET_ZONE * scale;

  const luma = Buffer.alloc(width * height, WHITE);
  for (let row = 0; row < size; row += 1) {
    for (let col = 0; col < size; col += 1) {
      if (!data[row * size + col]) continue;
      for (let y = 0; y < scale; y += 1) {
        const start = (top + row * scale + y) * width + left + col * scale;
        luma.fill(BLACK, start, start + scale);
      }
    }
  }
  const chroma = Buffer.alloc((width / 2) * (height / 2) * 2, 128);
  const frame = Buffer.concat([Buffer.from('FRAME\n', 'latin1'), luma, chroma]);
  const header = Buffer.from(`YUV4MPEG2 W${width} H${height} F10:1 Ip A1:1 C420jpeg\n`, 'latin1');
  writeFileSync(path, Buffer.concat([header, ...Array(frames).fill(frame)]));
}
