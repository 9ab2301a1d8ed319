SUMMARY = "Endoscopy frame quality scoring and forwarding agent"
DESCRIPTION = "endo-agent captures every frame of an endoscopy video through GStreamer, \
               scores its image quality with an ONNX model run by tract, forwards the \
               good frames to a datalake over MQTT or HTTPS, and exports Prometheus metrics."
HOMEPAGE = "https://github.com/endo-agent/endo-agent"
BUGTRACKER = "https://github.com/endo-agent/endo-agent/issues"
SECTION = "multimedia"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=8;endline=8;md5=2507bd5f0713f05419cd2f22fa06fe62"

# Targets the agent has been built for: x86_64 (every test) and aarch64 (cross-built
# against a Debian arm64 sysroot and run under qemu-user, scores equal to x86_64's:
# scripts/aarch64.sh, docs/deploy.md "On aarch64"). This recipe itself has not been
# through a real bitbake run yet (yocto/README.md).

# Build: GStreamer headers for the gstreamer-rs bindings.
DEPENDS += "glib-2.0 gstreamer1.0 gstreamer1.0-plugins-base"

SRC_URI = "git://github.com/endo-agent/endo-agent.git;protocol=https;branch=main"
SRCREV = "0000000000000000000000000000000000000000"

S = "${WORKDIR}/git"

require endo-agent-crates.inc

inherit cargo pkgconfig systemd

# The shipped build: Cargo.toml's `dist` profile (release with fat link-time optimisation
# in one codegen unit: about 1 MB less resident memory, docs/benchmarks.md). cargo.bbclass
# passes BUILD_MODE to `cargo build` and installs from target/<triple>/BUILD_DIR.
BUILD_MODE = "--profile dist"
BUILD_DIR = "dist"

SYSTEMD_SERVICE:${PN} = "endo-agent.service"
# The unit runs as a DynamicUser=, whose name and id resolve only through nss-systemd:
# build the image's systemd with its "nss" PACKAGECONFIG and list "systemd" on the passwd
# and group lines of /etc/nsswitch.conf, or the journal shows getpwuid_r() failures
# (seen under a real systemd; not yet checked in a Yocto image).
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

CVE_PRODUCT = "endo-agent"

do_install:append() {
    # The unit runs /usr/bin/endo-agent (cargo.bbclass installs the binary to ${bindir}).
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/endo-agent.service ${D}${systemd_system_unitdir}/
    install -d ${D}${sysconfdir}/endo-agent
    install -m 0640 ${S}/config/agent.example.toml ${D}${sysconfdir}/endo-agent/agent.toml
    install -d ${D}${datadir}/endo-agent/models
    install -m 0644 ${S}/models/*.onnx ${S}/models/*.manifest.json ${D}${datadir}/endo-agent/models/
}

CONFFILES:${PN} = "${sysconfdir}/endo-agent/agent.toml"

# Run: the elements the pipelines in pipelines/ use. base: app (appsrc/appsink),
# playback (decodebin), videoconvertscale, videorate, videotestsrc; good: video4linux2
# (v4l2src), jpeg, matroska, rtp/rtsp/udp; queue and tee are in gstreamer1.0 itself.
# DeckLink SDI cards (pipelines/decklink.pipeline) also need gstreamer1.0-plugins-bad
# built with its decklink PACKAGECONFIG and Blackmagic's driver: add them in the image.
RDEPENDS:${PN} += "gstreamer1.0 \
                   gstreamer1.0-plugins-base-app \
                   gstreamer1.0-plugins-base-playback \
                   gstreamer1.0-plugins-base-videoconvertscale \
                   gstreamer1.0-plugins-base-videorate \
                   gstreamer1.0-plugins-base-videotestsrc \
                   gstreamer1.0-plugins-good-jpeg \
                   gstreamer1.0-plugins-good-matroska \
                   gstreamer1.0-plugins-good-rtp \
                   gstreamer1.0-plugins-good-rtpmanager \
                   gstreamer1.0-plugins-good-rtsp \
                   gstreamer1.0-plugins-good-udp \
                   gstreamer1.0-plugins-good-video4linux2 \
                   "
