#!/usr/bin/env python3
"""Reads voucher letters back as a person with a scanner would.

Renders each page of a PDF with pdfium (pypdfium2) and decodes the QR codes on it
with zxing-cpp, then prints JSON on stdout: one object per page, with the texts
of the QR codes found ("codes") and the page text as pdfium extracts it ("text").

    python3 tests/tools/decode_letters.py letters.pdf [--dpi 150] [--png-dir DIR]

--png-dir also writes each rendered page as a grayscale PNG, for a look at the layout.
Used by tests/voucher_letters.rs.
"""

import argparse
import json
import struct
import sys
import zlib

import pypdfium2 as pdfium
import zxingcpp


def grayscale(bitmap):
    """The rendered page as rows of one byte per pixel."""
    channels = bitmap.n_channels
    data = bytes(bitmap.buffer)
    if channels == 1:
        return [data[row * bitmap.stride:row * bitmap.stride + bitmap.width]
                for row in range(bitmap.height)]
    rows = []
    for row in range(bitmap.height):
        start = row * bitmap.stride
        # pdfium renders BGR(x); green is a fair stand-in for luminance on a black
        # and white letter.
        rows.append(data[start + 1:start + bitmap.width * channels:channels])
    return rows


def write_png(path, rows, width, height):
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind, payload):
        body = kind + payload
        return (struct.pack(">I", len(payload)) + body
                + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF))

    with open(path, "wb") as png:
        png.write(b"\x89PNG\r\n\x1a\n")
        png.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        png.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        png.write(chunk(b"IEND", b""))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("pdf")
    parser.add_argument("--dpi", type=float, default=150)
    parser.add_argument("--png-dir")
    args = parser.parse_args()

    document = pdfium.PdfDocument(args.pdf)
    pages = []
    for number in range(len(document)):
        page = document[number]
        bitmap = page.render(scale=args.dpi / 72, grayscale=True)
        rows = grayscale(bitmap)
        pixels = b"".join(rows)
        view = zxingcpp.ImageView(
            memoryview(pixels).cast("B", (bitmap.height, bitmap.width)),
            bitmap.width, bitmap.height, zxingcpp.ImageFormat.Lum)
        found = zxingcpp.read_barcodes(view, formats=zxingcpp.BarcodeFormat.QRCode)
        text = page.get_textpage().get_text_range()
        pages.append({"codes": [barcode.text for barcode in found], "text": text})
        if args.png_dir:
            write_png(f"{args.png_dir}/page-{number + 1}.png", rows, bitmap.width, bitmap.height)
    json.dump(pages, sys.stdout, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
