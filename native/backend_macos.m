/* macOS backends, behind the same ABI as backend_pulse.c.
 *
 *   mic     CoreAudio: an AudioQueue input on the default (or the named, by UID) device,
 *           delivering 16-bit PCM at the requested rate (the queue converts).
 *   system  ScreenCaptureKit (macOS 13+): an SCStream with audio capture on the main
 *           display, excluding edge's own process, float32 converted to 16-bit here.
 *
 * Both hand over buffers of any size; they are cut into whole frames and pushed
 * into the ring from the callback thread. Missing permission is an error naming
 * the setting to change (a stream that delivers only zeros is reported by the
 * Python side, which watches the levels).
 *
 * This file is built only on macOS (native/build_native.py) and is not compiled
 * or run by the Linux CI.
 */
#include "edge_audio_internal.h"

#import <AVFoundation/AVFoundation.h>
#import <AudioToolbox/AudioToolbox.h>
#import <CoreAudio/CoreAudio.h>
#import <CoreGraphics/CoreGraphics.h>
#import <CoreMedia/CoreMedia.h>
#import <Foundation/Foundation.h>
#import <ScreenCaptureKit/ScreenCaptureKit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIC_SETTING "System Settings > Privacy & Security > Microphone"
#define SCREEN_SETTING "System Settings > Privacy & Security > Screen & System Audio Recording"
#define QUEUE_BUFFERS 3
#define START_TIMEOUT_S 10

const char *edge_audio_backend(void) { return "coreaudio+screencapturekit"; }

/* ---- cutting buffers into whole frames ------------------------------------------ */

typedef struct {
    unsigned char *frame;
    int filled;
} assembler;

static void assemble(edge_audio *a, assembler *as, const unsigned char *data, size_t len) {
    while (len > 0) {
        size_t take = (size_t)(a->frame_bytes - as->filled);
        if (take > len) take = len;
        memcpy(as->frame + as->filled, data, take);
        as->filled += (int)take;
        data += take;
        len -= take;
        if (as->filled == a->frame_bytes) {
            edge_audio_push(a, as->frame);
            as->filled = 0;
        }
    }
}

/* ---- microphone: AudioQueue ---------------------------------------------------- */

typedef struct {
    AudioQueueRef queue;
    assembler as;
} mic_state;

static void mic_callback(void *user, AudioQueueRef queue, AudioQueueBufferRef buffer,
                         const AudioTimeStamp *start, UInt32 packets,
                         const AudioStreamPacketDescription *descs) {
    (void)start; (void)packets; (void)descs;
    edge_audio *a = user;
    mic_state *s = a->backend;
    if (!atomic_load(&a->running)) return;
    assemble(a, &s->as, buffer->mAudioData, buffer->mAudioDataByteSize);
    AudioQueueEnqueueBuffer(queue, buffer, 0, NULL);
}

static void mic_stop(edge_audio *a) {
    mic_state *s = a->backend;
    AudioQueueStop(s->queue, true);    /* synchronous: no callback runs after this */
    AudioQueueDispose(s->queue, true);
    free(s->as.frame);
    free(s);
}

static int mic_permission(char *err, size_t errlen) {
    AVAuthorizationStatus status = [AVCaptureDevice authorizationStatusForMediaType:AVMediaTypeAudio];
    if (status == AVAuthorizationStatusDenied || status == AVAuthorizationStatusRestricted) {
        snprintf(err, errlen, "no permission to use the microphone: allow this terminal under "
                 MIC_SETTING);
        return -1;
    }
    AudioObjectPropertyAddress addr = {kAudioHardwarePropertyDefaultInputDevice,
                                       kAudioObjectPropertyScopeGlobal,
                                       kAudioObjectPropertyElementMain};
    AudioDeviceID device = kAudioObjectUnknown;
    UInt32 size = sizeof device;
    if (AudioObjectGetPropertyData(kAudioObjectSystemObject, &addr, 0, NULL, &size, &device) != 0 ||
        device == kAudioObjectUnknown) {
        snprintf(err, errlen, "this Mac has no audio input device");
        return -1;
    }
    return 0;
}

static int mic_start(edge_audio *a, const char *device, char *err, size_t errlen) {
    if (mic_permission(err, errlen) != 0) return -1;
    mic_state *s = calloc(1, sizeof *s);
    if (!s || !(s->as.frame = malloc((size_t)a->frame_bytes))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    AudioStreamBasicDescription fmt = {0};
    fmt.mSampleRate = a->sample_rate;
    fmt.mFormatID = kAudioFormatLinearPCM;
    fmt.mFormatFlags = kLinearPCMFormatFlagIsSignedInteger | kLinearPCMFormatFlagIsPacked;
    fmt.mBitsPerChannel = 16;
    fmt.mChannelsPerFrame = (UInt32)a->channels;
    fmt.mBytesPerFrame = (UInt32)(2 * a->channels);
    fmt.mFramesPerPacket = 1;
    fmt.mBytesPerPacket = fmt.mBytesPerFrame;
    a->backend = s;
    OSStatus st = AudioQueueNewInput(&fmt, mic_callback, a, NULL, NULL, 0, &s->queue);
    if (st == 0 && device && *device) {
        CFStringRef uid = CFStringCreateWithCString(NULL, device, kCFStringEncodingUTF8);
        st = AudioQueueSetProperty(s->queue, kAudioQueueProperty_CurrentDevice, &uid, sizeof uid);
        CFRelease(uid);
        if (st != 0) {
            snprintf(err, errlen, "no input device with UID %s (OSStatus %d)", device, (int)st);
            AudioQueueDispose(s->queue, true);
            goto fail;
        }
    }
    if (st != 0) {
        snprintf(err, errlen, "cannot open the microphone (OSStatus %d)", (int)st);
        goto fail;
    }
    for (int i = 0; i < QUEUE_BUFFERS; i++) {
        AudioQueueBufferRef buffer;
        if (AudioQueueAllocateBuffer(s->queue, (UInt32)a->frame_bytes, &buffer) == 0)
            AudioQueueEnqueueBuffer(s->queue, buffer, 0, NULL);
    }
    st = AudioQueueStart(s->queue, NULL);
    if (st != 0) {
        snprintf(err, errlen, "cannot start the microphone (OSStatus %d): check " MIC_SETTING,
                 (int)st);
        AudioQueueDispose(s->queue, true);
        goto fail;
    }
    a->backend_stop = mic_stop;
    return 0;
fail:
    free(s->as.frame);
    free(s);
    a->backend = NULL;
    return -1;
}

/* ---- system audio: ScreenCaptureKit ---------------------------------------------- */

@interface EdgeAudioOutput : NSObject <SCStreamOutput, SCStreamDelegate>
@property(nonatomic) edge_audio *audio;
@property(nonatomic) assembler *as;
@end

@implementation EdgeAudioOutput
- (void)stream:(SCStream *)stream
    didOutputSampleBuffer:(CMSampleBufferRef)sample
                   ofType:(SCStreamOutputType)type {
    edge_audio *a = self.audio;
    if (type != SCStreamOutputTypeAudio || !atomic_load(&a->running)) return;
    CMItemCount frames = CMSampleBufferGetNumSamples(sample);
    size_t needed = 0;
    CMSampleBufferGetAudioBufferListWithRetainedBlockBuffer(sample, &needed, NULL, 0, NULL, NULL, 0,
                                                            NULL);
    AudioBufferList *list = malloc(needed);
    CMBlockBufferRef block = NULL;
    if (!list || CMSampleBufferGetAudioBufferListWithRetainedBlockBuffer(
                     sample, NULL, list, needed, NULL, NULL,
                     kCMSampleBufferFlag_AudioBufferList_Assure16ByteAlignment, &block) != 0) {
        free(list);
        return;
    }
    /* ScreenCaptureKit delivers float32, one buffer per channel (non-interleaved). */
    int channels = a->channels;
    int16_t *pcm = malloc((size_t)frames * (size_t)channels * sizeof(int16_t));
    if (pcm) {
        for (CMItemCount i = 0; i < frames; i++) {
            for (int c = 0; c < channels; c++) {
                UInt32 b = list->mNumberBuffers > (UInt32)c ? (UInt32)c : 0;
                const float *src = list->mBuffers[b].mData;
                float v = src[i] * 32767.0f;
                if (v > 32767.0f) v = 32767.0f;
                if (v < -32768.0f) v = -32768.0f;
                pcm[i * channels + c] = (int16_t)v;
            }
        }
        assemble(a, self.as, (const unsigned char *)pcm,
                 (size_t)frames * (size_t)channels * sizeof(int16_t));
        free(pcm);
    }
    if (block) CFRelease(block);
    free(list);
}

- (void)stream:(SCStream *)stream didStopWithError:(NSError *)error {
    edge_audio_fail(self.audio, "system audio capture stopped: %s",
                    error.localizedDescription.UTF8String);
}
@end

typedef struct {
    void *stream;  /* SCStream, retained */
    void *output;  /* EdgeAudioOutput, retained */
    assembler as;
} system_state;

static void system_stop(edge_audio *a) {
    system_state *s = a->backend;
    SCStream *stream = (__bridge_transfer SCStream *)s->stream;
    EdgeAudioOutput *output = (__bridge_transfer EdgeAudioOutput *)s->output;
    dispatch_semaphore_t done = dispatch_semaphore_create(0);
    [stream stopCaptureWithCompletionHandler:^(NSError *error) {
      dispatch_semaphore_signal(done);
    }];
    dispatch_semaphore_wait(done, dispatch_time(DISPATCH_TIME_NOW, START_TIMEOUT_S * NSEC_PER_SEC));
    [stream removeStreamOutput:output type:SCStreamOutputTypeAudio error:nil];
    stream = nil;
    output = nil;
    free(s->as.frame);
    free(s);
}

static int screen_permission(char *err, size_t errlen) {
    if (!CGPreflightScreenCaptureAccess()) {
        snprintf(err, errlen, "no permission to record system audio: allow this terminal under "
                 SCREEN_SETTING);
        return -1;
    }
    return 0;
}

static int system_start(edge_audio *a, char *err, size_t errlen) {
    if (screen_permission(err, errlen) != 0) return -1;
    int rate = a->sample_rate;
    if (rate != 8000 && rate != 16000 && rate != 24000 && rate != 48000) {
        snprintf(err, errlen, "system audio on macOS records at 8000, 16000, 24000 or 48000 Hz");
        return -1;
    }
    __block SCShareableContent *content = nil;
    __block NSError *failure = nil;
    dispatch_semaphore_t got = dispatch_semaphore_create(0);
    [SCShareableContent getShareableContentExcludingDesktopWindows:NO
                                               onScreenWindowsOnly:YES
                                                 completionHandler:^(SCShareableContent *c, NSError *e) {
                                                   content = c;
                                                   failure = e;
                                                   dispatch_semaphore_signal(got);
                                                 }];
    if (dispatch_semaphore_wait(got, dispatch_time(DISPATCH_TIME_NOW, START_TIMEOUT_S * NSEC_PER_SEC)) ||
        !content || content.displays.count == 0) {
        if (failure.code == SCStreamErrorUserDeclined)
            snprintf(err, errlen, "no permission to record system audio: allow this terminal under "
                     SCREEN_SETTING);
        else
            snprintf(err, errlen, "cannot list displays for system audio: %s",
                     failure ? failure.localizedDescription.UTF8String : "timed out");
        return -1;
    }
    NSMutableArray<SCRunningApplication *> *own = [NSMutableArray array];
    for (SCRunningApplication *app in content.applications)
        if (app.processID == getpid()) [own addObject:app];
    SCContentFilter *filter = [[SCContentFilter alloc] initWithDisplay:content.displays.firstObject
                                                 excludingApplications:own
                                                      exceptingWindows:@[]];
    SCStreamConfiguration *config = [[SCStreamConfiguration alloc] init];
    config.capturesAudio = YES;
    config.excludesCurrentProcessAudio = YES;
    config.sampleRate = rate;
    config.channelCount = a->channels;
    config.width = 2; /* the video side is unused: keep it as small and slow as allowed */
    config.height = 2;
    config.minimumFrameInterval = CMTimeMake(1, 1);

    system_state *s = calloc(1, sizeof *s);
    if (!s || !(s->as.frame = malloc((size_t)a->frame_bytes))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    EdgeAudioOutput *output = [[EdgeAudioOutput alloc] init];
    output.audio = a;
    output.as = &s->as;
    SCStream *stream = [[SCStream alloc] initWithFilter:filter configuration:config delegate:output];
    NSError *added = nil;
    dispatch_queue_t queue = dispatch_queue_create("edge-audio", DISPATCH_QUEUE_SERIAL);
    if (![stream addStreamOutput:output type:SCStreamOutputTypeAudio sampleHandlerQueue:queue
                           error:&added]) {
        snprintf(err, errlen, "cannot capture system audio: %s", added.localizedDescription.UTF8String);
        goto fail;
    }
    __block NSError *startError = nil;
    dispatch_semaphore_t started = dispatch_semaphore_create(0);
    [stream startCaptureWithCompletionHandler:^(NSError *e) {
      startError = e;
      dispatch_semaphore_signal(started);
    }];
    if (dispatch_semaphore_wait(started, dispatch_time(DISPATCH_TIME_NOW, START_TIMEOUT_S * NSEC_PER_SEC)) ||
        startError) {
        if (startError.code == SCStreamErrorUserDeclined)
            snprintf(err, errlen, "no permission to record system audio: allow this terminal under "
                     SCREEN_SETTING);
        else
            snprintf(err, errlen, "cannot start system audio capture: %s",
                     startError ? startError.localizedDescription.UTF8String : "timed out");
        goto fail;
    }
    s->stream = (__bridge_retained void *)stream;
    s->output = (__bridge_retained void *)output;
    a->backend = s;
    a->backend_stop = system_stop;
    return 0;
fail:
    free(s->as.frame);
    free(s);
    return -1;
}

/* ---- the ABI ---------------------------------------------------------------------- */

int edge_backend_start(edge_audio *a, int source, const char *device, char *err, size_t errlen) {
    @autoreleasepool {
        if (source == EDGE_SOURCE_MIC) return mic_start(a, device, err, errlen);
        if (source == EDGE_SOURCE_SYSTEM) {
            if (device && *device) {
                snprintf(err, errlen, "system audio on macOS takes no device name");
                return -1;
            }
            return system_start(a, err, errlen);
        }
        snprintf(err, errlen, "unknown source %d", source);
        return -1;
    }
}

int edge_audio_probe(int source, const char *device, int sample_rate, int channels, char *err,
                     size_t errlen) {
    (void)device; (void)sample_rate; (void)channels;
    @autoreleasepool {
        if (source == EDGE_SOURCE_PATTERN) return 0;
        if (source == EDGE_SOURCE_MIC) return mic_permission(err, errlen);
        if (source == EDGE_SOURCE_SYSTEM) return screen_permission(err, errlen);
        snprintf(err, errlen, "unknown source %d", source);
        return -1;
    }
}
