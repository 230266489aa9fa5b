/*
 * What the VNC and RDP front ends share about their upstream: the
 * libvncclient connection to a VM's VNC socket.
 */
#include "disp-priv.h"

#include <arpa/inet.h>
#include <rfb/rfbclient.h>
#include <string.h>

/*
 * The encodings QEMU may use towards us, replacing libvncclient's list.
 * libvncclient 0.9.14 also asks for ExtendedDesktopSize, which QEMU then
 * prefers for a mode change, but takes QEMU's screen id 0 for invalid,
 * keeps the old size and drops the connection on the next update ("Rect too
 * large").  Without it QEMU announces a mode change as DesktopSize, which
 * libvncclient follows.  QEMU's extended key events stay (keys are sent as
 * scancodes); SetDesktopSize still reaches QEMU, which answers it in
 * ExtendedDesktopSize form regardless.  Copyrect and raw only: on a local
 * socket raw costs QEMU (often on TCG) the least CPU.
 */
bool disp_rfb_set_encodings(struct _rfbClient *up)
{
    static const uint32_t encs[] = {rfbEncodingCopyRect, rfbEncodingRaw, rfbEncodingNewFBSize,
                                    rfbEncodingQemuExtendedKeyEvent, rfbEncodingLastRect};
    unsigned char msg[sz_rfbSetEncodingsMsg + sizeof(encs)] = {rfbSetEncodings, 0, 0,
                                                               sizeof(encs) / sizeof(encs[0])};
    for (size_t i = 0; i < sizeof(encs) / sizeof(encs[0]); i++) {
        uint32_t be = htonl(encs[i]);
        memcpy(msg + sz_rfbSetEncodingsMsg + 4 * i, &be, 4);
    }
    return WriteToRFBServer(up, (const char *)msg, sizeof(msg)) ? true : false;
}
