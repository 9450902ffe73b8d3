// The distributor's camera: shows the camera's picture, decodes QR codes in it (the
// browser's own BarcodeDetector where it exists, otherwise jsQR, served by the portal)
// and, when a code is read, puts it in the field and sends the form. Without a camera
// or without JavaScript the code is typed in the same field.
(function () {
  "use strict";
  var box = document.getElementById("camera");
  var video = document.getElementById("camera-video");
  var status = document.getElementById("camera-status");
  var start = document.getElementById("camera-start");
  var stop = document.getElementById("camera-stop");
  var field = document.getElementById("code");
  var form = document.getElementById("scan-form");
  if (!box || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return;
  }
  var stream = null;
  var detector = null;
  var canvas = document.createElement("canvas");
  var context = canvas.getContext("2d", { willReadFrequently: true });
  var sent = false;

  if ("BarcodeDetector" in window) {
    try {
      detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    } catch (error) {
      detector = null;
    }
  }

  function say(text) {
    status.textContent = text;
  }

  function found(text) {
    if (sent) {
      return;
    }
    sent = true;
    field.value = text;
    say(box.getAttribute("data-found"));
    halt();
    form.requestSubmit ? form.requestSubmit() : form.submit();
  }

  function decodeWithJsQR() {
    if (typeof window.jsQR !== "function" || !video.videoWidth) {
      return null;
    }
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    context.drawImage(video, 0, 0, canvas.width, canvas.height);
    var image = context.getImageData(0, 0, canvas.width, canvas.height);
    var result = window.jsQR(image.data, image.width, image.height, {
      inversionAttempts: "dontInvert",
    });
    return result && result.data ? result.data : null;
  }

  function tick() {
    if (!stream || sent) {
      return;
    }
    if (detector) {
      detector
        .detect(video)
        .then(function (codes) {
          if (codes.length > 0 && codes[0].rawValue) {
            found(codes[0].rawValue);
          } else {
            window.setTimeout(tick, 150);
          }
        })
        .catch(function () {
          detector = null;
          window.setTimeout(tick, 150);
        });
      return;
    }
    var text = decodeWithJsQR();
    if (text) {
      found(text);
    } else {
      window.setTimeout(tick, 150);
    }
  }

  function halt() {
    if (stream) {
      stream.getTracks().forEach(function (track) {
        track.stop();
      });
      stream = null;
    }
    box.hidden = true;
    stop.hidden = true;
    start.hidden = false;
  }

  start.addEventListener("click", function () {
    navigator.mediaDevices
      .getUserMedia({ video: { facingMode: "environment" }, audio: false })
      .then(function (media) {
        stream = media;
        video.srcObject = media;
        box.hidden = false;
        start.hidden = true;
        stop.hidden = false;
        say(box.getAttribute("data-scanning"));
        return video.play();
      })
      .then(tick)
      .catch(function () {
        halt();
        box.hidden = false;
        say(box.getAttribute("data-denied"));
        field.focus();
      });
  });
  stop.addEventListener("click", function () {
    halt();
    field.focus();
  });
  start.hidden = false;
})();
