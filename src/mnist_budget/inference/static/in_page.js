// The in-page reader of the drawing page (draw.html) in the folder that `task=export format=web` writes:
// the canvas made MNIST-like exactly as the server's mnist_budget.data.preprocess.mnist_style does it, then
// the exported ONNX model run by ONNX Runtime Web in the page. Nothing leaves the browser.
//
// Every step mirrors the Python one, in the same number type (numpy's float32 steps through Math.fround,
// Python's and numpy's round-half-to-even, Pillow's grey conversion and its fixed-point Lanczos resize), so
// that the page's 28x28 image equals the server's for the same canvas (tests/test_web_export.py checks it).
// Classic scripts only, loaded by <script> tags: a page opened from disk (file://) may not fetch() files,
// so the model (model.js) and the runtime's WebAssembly (ort/runtime.js) arrive as JavaScript.
"use strict";
(() => {
  const FIELD = 28, BOX = 20, MNIST_STROKE = 2.5, MIN_CONTRAST = 0.08;  // data/preprocess.py's constants
  const f32 = Math.fround;

  class ImageProblem extends Error {}

  // Python's round() and numpy's np.round: halves go to the even neighbour.
  function roundHalfEven(x) {
    const low = Math.floor(x);
    const diff = x - low;
    if (diff > 0.5) return low + 1;
    if (diff < 0.5) return low;
    return low % 2 === 0 ? low : low + 1;
  }

  // Pillow's convert("L") (ITU-R 601-2 luma in 16-bit fixed point), then / 255 in float32. The page's canvas
  // is painted white before any ink, so every pixel is opaque and needs no compositing onto paper.
  function toGray(rgba, count) {
    const gray = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const level = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >> 16;
      gray[i] = f32(level / 255);
    }
    return gray;
  }

  // numpy's percentile (linear method) of a float32 array.
  function percentile(values, q) {
    const sorted = Float32Array.from(values).sort();
    const index = (q / 100) * (sorted.length - 1);
    const below = Math.floor(index), above = Math.min(below + 1, sorted.length - 1);
    const t = index - below;
    const diff = sorted[above] - sorted[below];
    return t >= 0.5 ? sorted[above] - diff * (1 - t) : sorted[below] + diff * t;
  }

  function brightInk(gray, width, height) {
    const border = [];
    for (let x = 0; x < width; x++) border.push(gray[x], gray[(height - 1) * width + x]);
    for (let y = 0; y < height; y++) border.push(gray[y * width], gray[y * width + width - 1]);
    const sorted = Float32Array.from(border).sort();
    const middle = sorted.length >> 1;
    const paper = sorted.length % 2 ? sorted[middle] : f32(f32(sorted[middle - 1] + sorted[middle]) / 2);
    const ink = new Float32Array(gray.length);
    for (let i = 0; i < gray.length; i++) ink[i] = paper < 0.5 ? f32(gray[i] - paper) : f32(paper - gray[i]);
    const peak = f32(percentile(ink, 99.9));
    if (peak < MIN_CONTRAST) throw new ImageProblem("no ink found (a blank or uniform image)");
    for (let i = 0; i < ink.length; i++) {
      const value = Math.min(Math.max(f32(ink[i] / peak), 0), 1);
      ink[i] = value < 0.25 ? 0 : value;
    }
    return ink;
  }

  function strokeWidth(mask, width, height) {
    let area = 0, inner = 0;
    const at = (x, y) => x >= 0 && y >= 0 && x < width && y < height && mask[y * width + x];
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (!mask[y * width + x]) continue;
        area += 1;
        if (at(x, y - 1) && at(x, y + 1) && at(x - 1, y) && at(x + 1, y)) inner += 1;
      }
    }
    return (2 * area) / Math.max(1, area - inner);
  }

  // mnist_budget.data.preprocess.max_filter(np.pad(pixels, size // 2 + 1), size): the padding is zeros
  // and wider than half the window, so the window's edge never reaches past it.
  function thicken(pixels, width, height, size) {
    const pad = (size >> 1) + 1, half = size >> 1;
    const w = width + 2 * pad, h = height + 2 * pad;
    const padded = new Uint8Array(w * h);
    for (let y = 0; y < height; y++) padded.set(pixels.subarray(y * width, (y + 1) * width), (y + pad) * w + pad);
    const rows = new Uint8Array(w * h), out = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let most = 0;
        for (let d = Math.max(0, x - half); d <= Math.min(w - 1, x + half); d++) most = Math.max(most, padded[y * w + d]);
        rows[y * w + x] = most;
      }
    }
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let most = 0;
        for (let d = Math.max(0, y - half); d <= Math.min(h - 1, y + half); d++) most = Math.max(most, rows[d * w + x]);
        out[y * w + x] = most;
      }
    }
    return { pixels: out, width: w, height: h };
  }

  // Pillow's resize(..., Image.Resampling.LANCZOS) of an 8-bit grey image (libImaging/Resample.c): separable,
  // coefficients in 22-bit fixed point, the horizontal pass rounded to 8 bits before the vertical one.
  const PRECISION_BITS = 22;
  function sinc(x) {
    if (x === 0) return 1;
    x *= Math.PI;
    return Math.sin(x) / x;
  }
  const lanczos = (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0);

  function coefficients(inSize, outSize) {
    const scale = inSize / outSize;
    const filterScale = Math.max(scale, 1);
    const support = 3 * filterScale;
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2), kk = new Int32Array(outSize * ksize);
    for (let xx = 0; xx < outSize; xx++) {
      const centre = (xx + 0.5) * scale;
      const xmin = Math.max(0, Math.trunc(centre - support + 0.5));
      const xmax = Math.min(inSize, Math.trunc(centre + support + 0.5)) - xmin;
      const weights = [];
      let total = 0;
      for (let x = 0; x < xmax; x++) {
        const w = lanczos((x + xmin - centre + 0.5) / filterScale);
        weights.push(w);
        total += w;
      }
      for (let x = 0; x < xmax; x++) {
        const w = total !== 0 ? weights[x] / total : weights[x];
        kk[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
      }
      bounds[2 * xx] = xmin;
      bounds[2 * xx + 1] = xmax;
    }
    return { bounds, kk, ksize };
  }

  const clip8 = (sum) => Math.min(255, Math.max(0, Math.floor(sum / (1 << PRECISION_BITS))));

  // out[y][x] = the rows' pixels weighted by coefficients x: image row y + rowStart, columns shifted by colShift.
  function horizontalPass(image, width, rows, rowStart, colShift, outWidth, c) {
    const out = new Uint8Array(outWidth * rows);
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < outWidth; x++) {
        const min = c.bounds[2 * x] - colShift, count = c.bounds[2 * x + 1];
        let sum = 1 << (PRECISION_BITS - 1);
        for (let k = 0; k < count; k++) sum += image[(y + rowStart) * width + min + k] * c.kk[x * c.ksize + k];
        out[y * outWidth + x] = clip8(sum);
      }
    }
    return out;
  }

  // out[y][x] = column x's pixels weighted by coefficients y, the image's rows shifted by rowShift.
  function verticalPass(image, width, rowShift, outHeight, c) {
    const out = new Uint8Array(width * outHeight);
    for (let y = 0; y < outHeight; y++) {
      const min = c.bounds[2 * y] - rowShift, count = c.bounds[2 * y + 1];
      for (let x = 0; x < width; x++) {
        let sum = 1 << (PRECISION_BITS - 1);
        for (let k = 0; k < count; k++) sum += image[(min + k) * width + x] * c.kk[y * c.ksize + k];
        out[y * width + x] = clip8(sum);
      }
    }
    return out;
  }

  const span = (c) => [c.bounds[0], c.bounds[c.bounds.length - 2] + c.bounds[c.bounds.length - 1]];

  function resizeLanczos(pixels, width, height, outWidth, outHeight) {
    const horizontal = outWidth !== width ? coefficients(width, outWidth) : null;
    const vertical = outHeight !== height ? coefficients(height, outHeight) : null;
    if (!vertical) return horizontal ? horizontalPass(pixels, width, height, 0, 0, outWidth, horizontal) : pixels;
    // Pillow's source does the horizontal pass first, over the rows the vertical one reads; the installed
    // Pillow does a shrink of an image more than twice as tall as wide vertical first, over the columns the
    // horizontal one reads (found against it on 400 crop sizes; tests/test_web_export.py compares the two).
    if (horizontal && outHeight < height && outWidth < width && 2 * width < height) {
      const [first, last] = span(horizontal);
      const columns = new Uint8Array(height * (last - first));
      for (let y = 0; y < height; y++) columns.set(pixels.subarray(y * width + first, y * width + last), y * (last - first));
      const tall = verticalPass(columns, last - first, 0, outHeight, vertical);
      return horizontalPass(tall, last - first, outHeight, 0, first, outWidth, horizontal);
    }
    if (!horizontal) return verticalPass(pixels, width, 0, outHeight, vertical);
    const [first, last] = span(vertical);
    const wide = horizontalPass(pixels, width, last - first, first, 0, outWidth, horizontal);
    return verticalPass(wide, outWidth, first, outHeight, vertical);
  }

  function centreByMass(digit, width, height) {
    const field = new Float32Array(FIELD * FIELD);
    let total = 0, rowSum = 0, colSum = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = digit[y * width + x];
        total += v;
        rowSum += y * v;
        colSum += x * v;
      }
    }
    const centreRow = total ? rowSum / total : (height - 1) / 2;
    const centreCol = total ? colSum / total : (width - 1) / 2;
    const top = Math.min(Math.max(roundHalfEven((FIELD - 1) / 2 - centreRow), 0), FIELD - height);
    const left = Math.min(Math.max(roundHalfEven((FIELD - 1) / 2 - centreCol), 0), FIELD - width);
    for (let y = 0; y < height; y++) field.set(digit.subarray(y * width, (y + 1) * width), (top + y) * FIELD + left);
    return field;
  }

  // mnist_style: RGBA pixels of any size -> the 28x28 float32 field in [0, 1] the network reads.
  function mnistStyle(rgba, width, height) {
    const ink = brightInk(toGray(rgba, width * height), width, height);
    let top = height, bottom = -1, left = width, right = -1, count = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (ink[y * width + x] > 0.5) {
          count += 1;
          top = Math.min(top, y); bottom = Math.max(bottom, y);
          left = Math.min(left, x); right = Math.max(right, x);
        }
      }
    }
    if (count < 4) throw new ImageProblem("no ink found (only specks)");
    const cropWidth = right - left + 1, cropHeight = bottom - top + 1;
    let longer = Math.max(cropWidth, cropHeight);
    let scale = BOX / longer;
    const wanted = MNIST_STROKE / scale;
    const mask = new Uint8Array(cropWidth * cropHeight);
    let pixels = new Uint8Array(cropWidth * cropHeight);
    for (let y = 0; y < cropHeight; y++) {
      for (let x = 0; x < cropWidth; x++) {
        const value = ink[(y + top) * width + x + left];
        mask[y * cropWidth + x] = value > 0.5 ? 1 : 0;
        pixels[y * cropWidth + x] = roundHalfEven(f32(value * 255));
      }
    }
    const penWidth = strokeWidth(mask, cropWidth, cropHeight);
    let w = cropWidth, h = cropHeight;
    if (penWidth < 0.6 * wanted) {  // a thin pen on a big picture: thickened to MNIST's stroke first
      const size = roundHalfEven(wanted - penWidth) | 1;
      ({ pixels, width: w, height: h } = thicken(pixels, w, h, size));
      longer = Math.max(w, h);
      scale = BOX / longer;
    }
    const newWidth = Math.max(1, roundHalfEven(w * scale)), newHeight = Math.max(1, roundHalfEven(h * scale));
    const small8 = resizeLanczos(pixels, w, h, newWidth, newHeight);
    const small = new Float32Array(small8.length);
    let most = 0;
    for (let i = 0; i < small8.length; i++) {
      small[i] = f32(small8[i] / 255);
      most = Math.max(most, small[i]);
    }
    if (most > 0) for (let i = 0; i < small.length; i++) small[i] = f32(small[i] / most);
    return centreByMass(small, newWidth, newHeight);
  }

  function bytesOf(base64) {
    const text = atob(base64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  async function gunzip(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).arrayBuffer();
  }

  // The 28x28 image as the server returns it: a PNG of np.uint8(np.round(image * 255)), white ink on black.
  function seenPng(field) {
    const canvas = document.createElement("canvas");
    canvas.width = FIELD;
    canvas.height = FIELD;
    const context = canvas.getContext("2d");
    const image = context.createImageData(FIELD, FIELD);
    for (let i = 0; i < field.length; i++) {
      const level = roundHalfEven(f32(field[i] * 255));
      image.data.set([level, level, level, 255], 4 * i);
    }
    context.putImageData(image, 0, 0);
    return canvas.toDataURL("image/png").split(",")[1];
  }

  const model = window.MNIST_BUDGET_MODEL;  // model.js: the metadata and the ONNX file in base64
  const runtime = window.MNIST_BUDGET_RUNTIME;  // ort/runtime.js: the runtime's loader and its gzipped WebAssembly
  const meta = model.metadata;

  async function startSession() {
    ort.env.wasm.numThreads = 1;  // threads need a cross-origin-isolated page, which a static host does not give
    ort.env.wasm.wasmBinary = await gunzip(bytesOf(runtime.wasm_gzip_base64));
    // ONNX Runtime imports its loader as a module; from disk a module file may not load, a Blob URL may.
    ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(new Blob([runtime.loader], { type: "text/javascript" })) };
    return ort.InferenceSession.create(bytesOf(model.onnx), { executionProviders: ["wasm"] });
  }

  async function probabilities(session, field) {
    const { mean, std } = meta.normalisation;
    const input = new Float32Array(field.length);
    for (let i = 0; i < field.length; i++) input[i] = f32(f32(field[i] - f32(mean)) / f32(std));
    const feeds = { [meta.input.name]: new ort.Tensor("float32", input, [1, 1, FIELD, FIELD]) };
    const logits = Array.from((await session.run(feeds))[meta.output.name].data);
    const top = Math.max(...logits);
    const exps = logits.map((v) => Math.exp(v - top));
    const sum = exps.reduce((a, b) => a + b, 0);
    return exps.map((v) => v / sum);
  }

  const round4 = (p) => Math.round(p * 10000) / 10000;

  // The same answer as one file's in POST /predict: digit, probability, unsure, top-3, the image seen.
  function answer(probs, field) {
    const order = probs.map((p, d) => [d, p]).sort((a, b) => b[1] - a[1]).slice(0, 3);
    return {
      digit: order[0][0],
      probability: round4(order[0][1]),
      unsure: order[0][1] < meta.unsure_below,
      top3: order.map(([d, p]) => [d, round4(p)]),
      seen_28x28_png: seenPng(field),
    };
  }

  const ready = startSession().then(async (session) => {
    await probabilities(session, new Float32Array(FIELD * FIELD));  // the first run compiles: not on a stroke
    window.readyMs = performance.now();  // page load (navigation start) -> the network's first answer
    return session;
  });

  window.mnistBudgetReader = {
    mode: "in-page",
    metadata: meta,
    ready,
    mnistStyle,  // exposed for tests/test_web_export.py, which compares it with the server's preprocessing
    async read(canvas) {
      const session = await ready;
      const context = canvas.getContext("2d");
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      let field;
      try {
        field = mnistStyle(pixels, canvas.width, canvas.height);
      } catch (problem) {
        if (problem instanceof ImageProblem) return { error: problem.message };
        throw problem;
      }
      return answer(await probabilities(session, field), field);
    },
  };
})();
