#!/usr/bin/env bash
# Prepares, on a CPU machine with network, what scripts/gpu-check.sh needs on the GPU machine
# and cannot fetch there (it reaches no package registry). The GPU machine's image already has
# CUDA, PyTorch, OpenMPI, HDF5, CLI11, spdlog, fmt, nlohmann-json and GoogleTest; it lacks
# FFmpeg's libraries, x264, the NVDEC headers, toml++, xxhash's headers and protobuf (the
# library, its headers and protoc, for the TensorBoard event files).
#
# Debian's own FFmpeg pulls over 130 shared libraries (about 150 MB), more than the 64 MiB that
# may travel. So this script downloads Debian's FFmpeg source and builds a small FFmpeg from it:
# the native decoders and demuxers Holo reads, libx264 and mpeg4 for `holo data synth`, NVDEC
# (libavcodec's CUDA hwaccel through the ffnvcodec headers, loaded at run time), swscale, and the
# `ffmpeg`/`ffprobe` programs for the benchmark floor. The few Debian packages are unpacked with
# `dpkg -x`, never installed.
#
# Output: .gpu-deps/root (about 25 MB), ignored by git. Usage: scripts/gpu-deps.sh [--jobs N]
# Then on the GPU machine: scripts/gpu-check.sh (the device tool carries .gpu-deps).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
out="$here/.gpu-deps"
jobs="$(nproc)"
if [ "${1:-}" = "--jobs" ]; then jobs="$2"; fi

packages=(libx264-164 libx264-dev libffmpeg-nvenc-dev libtomlplusplus-dev libtomlplusplus3
          libxxhash0 libxxhash-dev libprotobuf32 libprotobuf-lite32 libprotobuf-dev libprotoc32
          protobuf-compiler)
ffmpeg_version="$(dpkg-query -W -f='${Version}' libavcodec59 2>/dev/null | sed 's/^[0-9]*://; s/-.*//')"
: "${ffmpeg_version:=5.1.9}"

mkdir -p "$out/debs" "$out/src" "$out/root"
if ! command -v nasm >/dev/null; then   # FFmpeg's x86 assembly (the fast decode paths)
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y -qq --no-install-recommends nasm
fi
stamp="$out/root/.holo-gpu-deps"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "ffmpeg $ffmpeg_version; ${packages[*]}" ]; then
  echo "gpu-deps: $out/root is current (ffmpeg $ffmpeg_version)"
  exit 0
fi

echo "gpu-deps: downloading ${#packages[@]} packages"
(cd "$out/debs" && apt-get download "${packages[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
for p in "${packages[@]}"; do
  ls "$out/debs/${p}_"*.deb >/dev/null 2>&1 || { echo "gpu-deps: could not download $p" >&2; exit 1; }
done
for f in "$out"/debs/*.deb; do dpkg -x "$f" "$out/root"; done

if [ ! -f "$out/src/ffmpeg_${ffmpeg_version}.orig.tar.xz" ]; then
  echo "gpu-deps: downloading FFmpeg ${ffmpeg_version} source (Debian)"
  lists="$out/src/apt-lists"
  mkdir -p "$lists/partial"
  cat > "$out/src/sources.list" <<EOF
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian-security bookworm-security main
EOF
  apt_o=(-o "Dir::Etc::sourcelist=$out/src/sources.list" -o Dir::Etc::sourceparts=-
         -o "Dir::State::Lists=$lists")
  apt-get "${apt_o[@]}" update -qq
  (cd "$out/src" && apt-get "${apt_o[@]}" source --download-only "ffmpeg=${ffmpeg_version}*" 2>&1 |
     grep -v '^W: Download is performed unsandboxed' || true)
fi
tarball="$out/src/ffmpeg_${ffmpeg_version}.orig.tar.xz"
[ -f "$tarball" ] || { echo "gpu-deps: no FFmpeg source at $tarball" >&2; exit 1; }

build="$out/src/build"
rm -rf "$build" && mkdir -p "$build"
tar -C "$build" --strip-components=1 -xJf "$tarball"

# The unpacked .pc files say /usr; point copies of them at the unpacked tree.
pcdir="$out/src/pkgconfig"
rm -rf "$pcdir" && mkdir -p "$pcdir"
for pc in "$out"/root/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc "$out"/root/usr/share/pkgconfig/*.pc; do
  sed -e "s#=/usr#=$out/root/usr#; s#-L/usr/#-L$out/root/usr/#g; s#-I/usr/#-I$out/root/usr/#g" \
    "$pc" > "$pcdir/$(basename "$pc")"
done
export PKG_CONFIG_PATH="$pcdir"
cd "$build"
echo "gpu-deps: configuring FFmpeg"
./configure --prefix=/usr --libdir=/usr/lib/x86_64-linux-gnu --shlibdir=/usr/lib/x86_64-linux-gnu \
  --enable-shared --disable-static --disable-doc --disable-debug --enable-stripping \
  --enable-gpl --disable-autodetect --enable-pthreads --enable-zlib \
  --enable-libx264 --enable-ffnvcodec --enable-nvdec \
  --disable-everything \
  --enable-decoder=h264,hevc,mpeg4,mpeg2video,mpeg1video,vp8,vp9,mjpeg,png,rawvideo,aac,mp3,pcm_s16le,opus,vorbis \
  --enable-encoder=libx264,mpeg4,rawvideo,wrapped_avframe,pcm_s16le,aac,png \
  --enable-hwaccel=h264_nvdec,hevc_nvdec,mpeg4_nvdec,mpeg2_nvdec,mpeg1_nvdec,vp8_nvdec,vp9_nvdec,mjpeg_nvdec \
  --enable-parser=h264,hevc,mpeg4video,mpegvideo,vp8,vp9,mjpeg,png,aac,mpegaudio,opus,vorbis \
  --enable-demuxer=mov,matroska,avi,h264,hevc,m4v,mpegts,mpegps,mp3,wav,aac,image2,rawvideo,ogg \
  --enable-muxer=mp4,mov,matroska,avi,h264,null,rawvideo,image2,wav,adts \
  --enable-protocol=file,pipe \
  --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,extract_extradata,null,vp9_superframe_split \
  --enable-filter=scale,format,null,nullsink,anull,anullsink,aformat,aresample,copy,fps,setpts,trim,select,hwdownload,scale_cuda \
  --enable-indev=lavfi --enable-filter=testsrc,testsrc2,color,sine,anullsrc,drawbox \
  >"$out/src/configure.log" 2>&1 || { tail -20 "$out/src/configure.log"; exit 1; }
grep -E '^(Enabled hwaccels|h264_nvdec)' -A3 "$out/src/configure.log" | head -5 || true
echo "gpu-deps: building FFmpeg with $jobs jobs"
make -j"$jobs" >"$out/src/make.log" 2>&1 || { tail -30 "$out/src/make.log"; exit 1; }
make install DESTDIR="$out/root" >>"$out/src/make.log" 2>&1
rm -rf "$build" "$out/root/usr/share/doc" "$out/root/usr/share/man" "$out/root/usr/share/ffmpeg/examples"
echo "ffmpeg $ffmpeg_version; ${packages[*]}" > "$stamp"
du -sh "$out/root"
echo "gpu-deps: done; carry .gpu-deps/root to the GPU machine and run scripts/gpu-check.sh there"
