#!/usr/bin/env python3
# Writes html/static/favicon.ico: a form on the site's blue (DADS blue-900,
# the header's line), 32x32 and 16x16, each a PNG inside the ICO.  Only
# the standard library; the shapes are drawn with 4x4 supersampling.
#
#   python3 html/make-favicon.py

import os
import struct
import zlib

BLUE = (0x00, 0x17, 0xc1)
PALE = (0xc5, 0xd7, 0xfb)       # the folded corner (DADS blue-200)
WHITE = (0xff, 0xff, 0xff)

# on a 32-unit square: (colour, shape), later shapes painted over earlier
SHAPES = [
    (BLUE, ('round', 0, 0, 32, 32, 7)),
    (WHITE, ('poly', [(8, 5), (19, 5), (24, 10), (24, 27), (8, 27)])),
    (PALE, ('poly', [(19, 5), (24, 10), (19, 10)])),
    (BLUE, ('rect', 11, 13, 21, 15)),
    (BLUE, ('rect', 11, 17.5, 21, 19.5)),
    (BLUE, ('rect', 11, 22, 17, 24)),
]


def inside(shape, x, y):
    kind = shape[0]
    if kind == 'rect':
        _, x0, y0, x1, y1 = shape
        return x0 <= x < x1 and y0 <= y < y1
    if kind == 'round':
        _, x0, y0, x1, y1, r = shape
        if not (x0 <= x < x1 and y0 <= y < y1):
            return False
        cx = min(max(x, x0 + r), x1 - r)
        cy = min(max(y, y0 + r), y1 - r)
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    points = shape[1]
    odd = False
    for (ax, ay), (bx, by) in zip(points, points[1:] + points[:1]):
        if (ay > y) != (by > y) and x < ax + (y - ay) * (bx - ax) / (by - ay):
            odd = not odd
    return odd


def render(size, ss=4):
    rows = []
    scale = 32 / size
    for py in range(size):
        row = bytearray([0])                    # PNG filter: none
        for px in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(ss):
                for sx in range(ss):
                    x = (px + (sx + 0.5) / ss) * scale
                    y = (py + (sy + 0.5) / ss) * scale
                    colour = None
                    for c, shape in SHAPES:
                        if inside(shape, x, y):
                            colour = c
                    if colour:
                        for i in range(3):
                            acc[i] += colour[i]
                        acc[3] += 1
            n = acc[3]
            if n:
                row += bytes(round(acc[i] / n) for i in range(3))
                row.append(round(255 * n / (ss * ss)))
            else:
                row += b'\0\0\0\0'
        rows.append(bytes(row))
    return png(size, b''.join(rows))


def png(size, raw):
    def chunk(kind, data):
        body = kind + data
        return (struct.pack('>I', len(data)) + body
                + struct.pack('>I', zlib.crc32(body) & 0xffffffff))
    header = struct.pack('>IIBBBBB', size, size, 8, 6, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
            + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))


def ico(images):
    out = struct.pack('<HHH', 0, 1, len(images))
    offset = 6 + 16 * len(images)
    for size, data in images:
        out += struct.pack('<BBBBHHII', size % 256, size % 256, 0, 0, 1, 32,
                           len(data), offset)
        offset += len(data)
    return out + b''.join(data for _, data in images)


if __name__ == '__main__':
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, 'static', 'favicon.ico'), 'wb') as f:
        f.write(ico([(32, render(32)), (16, render(16))]))
